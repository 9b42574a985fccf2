"""What the commands share: the run options, loading a model with its data, output.

Heavy modules (torch, the engine, plotting) are imported inside the functions that need
them, so ``rcert --help`` and ``rcert --version`` start without them.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

import click

from rcert.cli import guard
from rcert.cli.options import (
    apply,
    build,
    given,
    model_source,
    run_config_options,
    source_options,
)
from rcert.errors import RcertError
from rcert.settings import CertifyConfig, RunConfig, check_seed, run_record
from rcert.source import ModelSource

#: What ``--model`` takes, for every command that loads models.
MODEL_HELP = ("Model to certify: an rcert checkpoint (.safetensors, .rcert), a torch.save file "
              "or Lightning .ckpt (with --arch, --factory or --library), or a pythae folder.")

FORMATS = ("table", "csv", "json")

#: ``--limit`` and ``--quiet``, the same on every command that takes them.
LIMIT = click.option("--limit", type=int, default=None,
                     help="Use only the first K inputs of the data.")
QUIET = click.option("--quiet", is_flag=True, help="No progress on stderr.")


def run_options(f: Callable) -> Callable:
    """Options every command that runs on a model and data takes."""
    options = [
        click.option("--model", "model_path", required=True, help=MODEL_HELP),
        click.option("--data", "data_spec", default=None,
                     help="Data spec, e.g. digits:test, path/x.npz, mnist:DIR:test "
                          "[default: test split of the model's training data]."),
        LIMIT,
        click.option("--format", "fmt", type=click.Choice(FORMATS), default="table",
                     show_default=True, help="Output: a table for people, CSV or JSON."),
        click.option("--output", type=click.Path(dir_okay=False), default=None,
                     help="Write here (atomically) instead of stdout; - is stdout."),
        QUIET,
    ]
    return apply(options, source_options()(run_config_options()(f)))


def run_config(device: str | None, memory_mb: float | None, quiet: bool,
               allow: tuple[str, ...] = ()) -> RunConfig:
    """The run settings from the options; a checkpoint's device defaults to the CPU."""
    name = device or "cpu"
    if name == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RcertError("--device cuda was asked for but CUDA is not available here; "
                             "use --device cpu")
    return build(RunConfig, device=name, memory_mb=memory_mb, progress=not quiet,
                 allow=tuple(allow))


def floats(value: str, option: str) -> list[float]:
    """A comma-separated list of numbers."""
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise RcertError(f"{option} takes comma-separated numbers such as 0.5,1,2, "
                         f"got {value!r}") from None


def int_list(value: str | None, option: str) -> tuple[int, ...] | None:
    """A comma-separated list of integers, or None."""
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise RcertError(f"{option} takes comma-separated integers such as 256,256, "
                         f"got {value!r}") from None


def command_line(argv: list[str] | None) -> str:
    """The command line that ran (``obj`` of the click context), as a shell would take it."""
    return shlex.join(["rcert", *(argv or [])])


def start(values: dict[str, Any]) -> tuple[RunConfig, ModelSource]:
    """The run settings and the model's source, from the options of :func:`run_options`."""
    run = run_config(values["device"], values["memory_mb"], values["quiet"], values["allow"])
    return run, model_source(values["model_path"], values)


def execute(kind: str, values: dict[str, Any], run: RunConfig, source: ModelSource,
            compute: Callable[[Any, Any], Any]) -> None:
    """Load the model and its data, run ``compute(model, dataset)`` collecting its
    reliability warnings, and write the ``kind`` result it returns (:func:`finish`).

    Before any loading, ``--seed`` is checked and ``--output`` must be writable.
    """
    from rcert import checks
    from rcert.files import check_output
    from rcert.runs import loading

    output = values["output"]
    if values.get("seed") is not None:
        check_seed(values["seed"], "--seed")
    if output is not None:
        check_output(output, hint="use --output - for stdout",
                     inputs={"model": source.path, "data": values["data_spec"]})
    model, dataset = loading.load_with_data(source, data_spec=values["data_spec"],
                                            limit=values["limit"], device=run.device)
    with checks.collect(reissue=False) as warned:
        df = compute(model, dataset)
    finish(df, kind, model, source, dataset, run, values["fmt"], output, warned)


def certify_config(model: Any, source: ModelSource, values: dict[str, Any]) -> CertifyConfig:
    """The certificate's settings from the options, ``r`` falling back on the checkpoint's."""
    from rcert.runs import loading

    fields = given(CertifyConfig, values)
    fields["r"] = loading.radius(model, fields.get("r"), source.path)
    return build(CertifyConfig, **fields)


def print_warnings(warned: list[dict[str, str]], model: str | None = None) -> None:
    """Each reliability warning once on stderr, as ``rcert: warning: CODE: message``."""
    where = f"{model}: " if model else ""
    for entry in warned:
        line = f"rcert: warning: {where}{entry['code']}: {entry['message']}"
        click.echo(guard.one_line(line), err=True)


def print_report_warnings(results: dict[str, dict[str, Any]]) -> None:
    """The reliability warnings of each model of a report, named by the model."""
    for name, res in results.items():
        print_warnings(res.get("warnings", []), name)


def finish(df: Any, kind: str, model: Any, source: ModelSource, dataset: Any, run: RunConfig,
           fmt: str, output: str | None, warned: list[dict[str, str]]) -> None:
    """Render the result, print its reliability warnings once to stderr, write it out.

    The result's ``config`` records the model checks the user allowed to fail (``allow``,
    present only when some were).
    """
    from rcert.files import STDOUT, write_output
    from rcert.models import foreign
    from rcert.results import schema, text

    res = schema.result(df, kind=kind, model=foreign.describe(model, source),
                        config={"data": str(dataset.spec), "device": run.device,
                                **run_record(run)},
                        warnings=warned)
    print_warnings(warned)
    rendered = {"table": text.to_table, "csv": text.to_csv, "json": text.to_json}[fmt](res)
    write_output(STDOUT if output is None else output, rendered)
