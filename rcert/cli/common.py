"""What the commands share: run options, loading a checkpoint with its data, writing output."""

from __future__ import annotations

from collections.abc import Callable

import click
import torch

from rcert import validate
from rcert.errors import RcertError
from rcert.files import atomic_write, check_writable
from rcert.models import checkpoint
from rcert.results import schema, text
from rcert.runs import loading

FORMATS = ("table", "csv", "json")


RENDERERS = {"table": text.to_table, "csv": text.to_csv, "json": text.to_json}


def device_of(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RcertError("--device cuda was asked for but CUDA is not available here; "
                         "use --device cpu")
    return torch.device(name)


def int_list(value: str | None, option: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise RcertError(f"{option} takes comma-separated integers such as 256,256, "
                         f"got {value!r}") from None


def emit(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        atomic_write(output, text)


def run_options(f: Callable) -> Callable:
    """Options every command that runs on a model and data takes."""
    options = [
        click.option("--model", "model_path", required=True, help="rcert checkpoint (.rcert)."),
        click.option("--data", "data_spec", default=None,
                     help="Data spec, e.g. digits:test, path/x.npz, mnist:DIR:test "
                          "[default: test split of the model's training data]."),
        click.option("--limit", type=int, default=None, help="Use only the first K inputs."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu",
                     show_default=True),
        click.option("--format", "fmt", type=click.Choice(FORMATS), default="table",
                     show_default=True),
        click.option("--output", type=click.Path(dir_okay=False), default=None,
                     help="Write here (atomically) instead of stdout."),
        click.option("--quiet", is_flag=True, help="No progress on stderr."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def attack_options(f: Callable) -> Callable:
    """How hard attacks try: restarts, steps, optimizer and common noise draws."""
    options = [
        click.option("--restarts", type=int, default=None,
                     help="Random starts per attack [default: 1 for --empirical, "
                          "5 for attack]."),
        click.option("--steps", type=int, default=None,
                     help="Optimizer steps per attack [default: 10 for --empirical, "
                          "50 for attack]."),
        click.option("--optimizer", type=click.Choice(["pgd", "lbfgs"]), default="pgd",
                     show_default=True),
        click.option("--n-noise", type=int, default=None,
                     help="Common noise draws in the attack objective [default: 32 for "
                          "--empirical, 16 for attack]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def load_run(model_path: str, data_spec: str | None, limit: int | None, seed: int, device: str,
          output: str | None) -> tuple:
    """The checkpoint and its data, after the checks that need no computation."""
    validate.check_seed(seed, "--seed")
    if output is not None:
        check_writable(output)
    return loading.load_with_data(model_path, data_spec=data_spec, limit=limit,
                                     device=device_of(device))


def finish(df, kind: str, model, model_path: str, dataset, device: str, fmt: str,
            output: str | None) -> None:
    res = schema.result(df, kind=kind, model=checkpoint.describe(model, model_path),
                        config={"data": str(dataset.spec), "device": device})
    emit(RENDERERS[fmt](res), output)


def or_default(value: int | None, default: int) -> int:
    """The option's value, or the command's default when it was not given (0 stays 0)."""
    return default if value is None else value


def floats(value: str, option: str) -> list[float]:
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise RcertError(f"{option} takes comma-separated numbers such as 0.5,1,2, "
                         f"got {value!r}") from None
