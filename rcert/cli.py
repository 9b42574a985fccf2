"""The ``rcert`` command: a thin layer over the Python API.

Every bad input ends as one line ``rcert: error: ...`` on stderr and exit status 2.
Machine-readable output goes to stdout (or ``--output``); progress goes to stderr.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import click
import torch

from rcert import bundle, check, checkpoint, plots, report, train, validate
from rcert.attacks import attack
from rcert.empirical import curve
from rcert.errors import RcertError
from rcert.files import atomic_write, check_writable
from rcert.margin import certify

FORMATS = ("table", "csv", "json")
RENDERERS = {"table": report.to_table, "csv": report.to_csv, "json": report.to_json}


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RcertError("--device cuda was asked for but CUDA is not available here; "
                         "use --device cpu")
    return torch.device(name)


def _int_list(value: str | None, option: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise RcertError(f"{option} takes comma-separated integers such as 256,256, "
                         f"got {value!r}") from None


def _emit(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        atomic_write(output, text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rcert", prog_name="rcert")
def cli() -> None:
    """Certify how robust a VAE's reconstructions are to input perturbations."""


def _run_options(f: Callable) -> Callable:
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


def _attack_options(f: Callable) -> Callable:
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


def _load(model_path: str, data_spec: str | None, limit: int | None, seed: int, device: str,
          output: str | None) -> tuple:
    """The checkpoint and its data, after the checks that need no computation."""
    validate.check_seed(seed, "--seed")
    if output is not None:
        check_writable(output)
    return checkpoint.load_with_data(model_path, data_spec=data_spec, limit=limit,
                                     device=_device(device))


def _finish(df, kind: str, model, model_path: str, dataset, device: str, fmt: str,
            output: str | None) -> None:
    res = report.result(df, kind=kind, model=checkpoint.describe(model, model_path),
                        config={"data": str(dataset.spec), "device": device})
    _emit(RENDERERS[fmt](res), output)


def _or(value: int | None, default: int) -> int:
    """The option's value, or the command's default when it was not given (0 stays 0)."""
    return default if value is None else value


def _floats(value: str, option: str) -> list[float]:
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise RcertError(f"{option} takes comma-separated numbers such as 0.5,1,2, "
                         f"got {value!r}") from None


@cli.command()
@_run_options
@click.option("--r", "r", type=float, default=None,
              help="Output radius r [default: the checkpoint's recommended r].")
@click.option("--n-samples", type=int, default=1000, show_default=True,
              help="Encoder-noise draws per input.")
@click.option("--alpha", type=float, default=0.001, show_default=True,
              help="Certified figures hold with probability 1 - alpha.")
@click.option("--m", "m", type=float, default=0.5, show_default=True,
              help="Level of r-robustness: P(||Delta|| <= r) > m.")
@click.option("--memory-mb", type=float, default=256.0, show_default=True,
              help="Memory budget of one chunk of work.")
@click.option("--empirical", is_flag=True,
              help="Also attack every certificate: empirical margin, violations, tightness.")
@click.option("--threat", type=click.Choice(["mean", "full"]), default="mean",
              show_default=True,
              help="With --empirical: attack the mean only (the bound's threat model) or "
                   "mean and sigma.")
@click.option("--resolution", type=float, default=None,
              help="With --empirical: bisection width [default: 2% of the margin].")
@_attack_options
def margin(model_path: str, data_spec: str | None, limit: int | None, seed: int, device: str,
           fmt: str, output: str | None, quiet: bool, r: float | None, n_samples: int,
           alpha: float, m: float, memory_mb: float, empirical: bool, threat: str,
           resolution: float | None, restarts: int | None, steps: int | None,
           optimizer: str, n_noise: int | None) -> None:
    """Theorem 1 margins and their tighter relatives, per input and dataset-wide."""
    validate.positive_float(memory_mb, "--memory-mb")
    model, dataset = _load(model_path, data_spec, limit, seed, device, output)
    attack = {"restarts": _or(restarts, 1), "steps": _or(steps, 10), "optimizer": optimizer,
              "n_noise": _or(n_noise, 32), "resolution": resolution}
    df = certify(model, dataset.x, r=checkpoint.radius(model, r, model_path), m=m,
                 n_samples=n_samples, alpha=alpha, seed=seed, index=dataset.index,
                 memory_mb=memory_mb, progress=not quiet, empirical=empirical,
                 threat="both" if threat == "full" else "mean", attack=attack)
    _finish(df, "margin", model, model_path, dataset, device, fmt, output)


@cli.command(name="attack")
@_run_options
@click.option("--L", "budgets", required=True, multiple=True,
              help="Attack budget ||d|| <= L; a list (0.5,1,2 or repeated --L) gives a "
                   "damage-vs-L curve.")
@click.option("--target", type=click.Choice(["mean", "sigma", "both"]), default="both",
              show_default=True, help="Which encoder output the perturbation reaches.")
@_attack_options
def attack_command(model_path: str, data_spec: str | None, limit: int | None, seed: int,
                   device: str, fmt: str, output: str | None, quiet: bool,
                   budgets: tuple[str, ...], target: str, restarts: int | None,
                   steps: int | None, optimizer: str, n_noise: int | None) -> None:
    """Maximum-damage attacks (Camuto et al. Eq 5), against Gaussian noise of the same norm."""
    values = [v for b in budgets for v in _floats(b, "--L")]
    model, dataset = _load(model_path, data_spec, limit, seed, device, output)
    df = attack(model, dataset.x, L=values, target=target, restarts=_or(restarts, 5),
                steps=_or(steps, 50), optimizer=optimizer, n_noise=_or(n_noise, 16), seed=seed,
                index=dataset.index, progress=not quiet)
    _finish(df, "attack", model, model_path, dataset, device, fmt, output)


@cli.command(name="curve")
@_run_options
@click.option("--r", "r", type=float, default=None,
              help="Output radius r [default: the checkpoint's recommended r].")
@click.option("--radii", required=True, help="Perturbation sizes, e.g. 0,0.25,0.5,1,2.")
@click.option("--direction", type=click.Choice(["random", "max-damage"]), default="random",
              show_default=True)
@click.option("--threat", type=click.Choice(["mean", "full"]), default="mean",
              show_default=True)
@click.option("--n-samples", type=int, default=500, show_default=True)
@click.option("--m", "m", type=float, default=0.5, show_default=True)
def curve_command(model_path: str, data_spec: str | None, limit: int | None, seed: int,
                  device: str, fmt: str, output: str | None, quiet: bool, r: float | None,
                  radii: str, direction: str, threat: str, n_samples: int, m: float) -> None:
    """p(||Delta(x, rho u)|| <= r) along a fixed direction u (Camuto et al. Fig 5)."""
    values = _floats(radii, "--radii")
    model, dataset = _load(model_path, data_spec, limit, seed, device, output)
    df = curve(model, dataset.x, r=checkpoint.radius(model, r, model_path), radii=values,
               direction=direction, m=m, threat="both" if threat == "full" else "mean",
               n_samples=n_samples, seed=seed, index=dataset.index)
    _finish(df, "curve", model, model_path, dataset, device, fmt, output)


@cli.command(name="plot")
@click.argument("kind", type=click.Choice(sorted(plots.PLOTS)))
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Figure file: .png or .svg.")
def plot_command(kind: str, results: tuple[str, ...], out: str) -> None:
    """Draw a figure from saved JSON results (one per model), without recomputing."""
    check_writable(out)
    figure = plots.PLOTS[kind]([plots.load_result(path) for path in results])
    plots.save(figure, out)


@cli.command(name="report")
@click.option("--model", "models", required=True, multiple=True,
              help="rcert checkpoint; repeat to compare models side by side.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for the report (created; resumed if interrupted).")
@click.option("--r", "r", type=float, default=None,
              help="Output radius r [default: each checkpoint's recommended r].")
@click.option("--data", "data_spec", default=None,
              help="Data spec [default: test split of each model's training data].")
@click.option("--limit", type=int, default=None)
@click.option("--n-samples", type=int, default=1000, show_default=True)
@click.option("--alpha", type=float, default=0.001, show_default=True)
@click.option("--m", "m", type=float, default=0.5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--empirical", is_flag=True, help="Also attack every certificate.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def report_command(models: tuple[str, ...], out: str, r: float | None, data_spec: str | None,
                   limit: int | None, n_samples: int, alpha: float, m: float, seed: int,
                   empirical: bool, device: str, quiet: bool) -> None:
    """Write a report folder: CSV, JSON, Markdown, JUnit XML, plots and an HTML page."""
    _device(device)
    entries = [{"path": path, "r": r, "data": data_spec, "limit": limit,
                "n_samples": n_samples, "alpha": alpha, "m": m, "seed": seed,
                "empirical": empirical, "device": device} for path in models]
    entries = [{k: v for k, v in e.items() if v is not None} for e in entries]
    results = bundle.compute(entries, Path(out), progress=not quiet)
    bundle.write(Path(out), results)
    click.echo((Path(out) / "summary.md").read_text(encoding="utf-8"), nl=False)


@cli.command(name="check")
@click.argument("config", default="rcert.toml", type=click.Path(dir_okay=False))
@click.option("--out", default="rcert-report", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the report.")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def check_command(config: str, out: str, quiet: bool) -> None:
    """Run the report of CONFIG (TOML) and judge its thresholds: exit 0 if all hold, 1 if not."""
    entries, thresholds = check.load_config(config)
    results = bundle.compute(entries, Path(out), progress=not quiet)
    verdicts = check.verdicts(results, thresholds)
    bundle.write(Path(out), results, verdicts)
    for v in verdicts:
        mark = "PASS" if v["passed"] else "FAIL"
        detail = "" if v["passed"] else f": {v['message']}"
        click.echo(f"{mark} {v['model']} {v['threshold']}{detail}")
    failed = sum(not v["passed"] for v in verdicts)
    click.echo(f"{len(verdicts) - failed} passed, {failed} failed; report in {out}")
    if failed:
        raise click.exceptions.Exit(1)


@cli.command(name="train")
@click.option("--data", "data_spec", required=True,
              help="Training data spec, e.g. digits:train or dsprites:train:res=32.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint to write; a model card goes beside it as .json.")
@click.option("--arch", type=click.Choice(["mlp", "conv"]), default="mlp", show_default=True)
@click.option("--latent-dim", type=int, default=8, show_default=True)
@click.option("--hidden", default=None, help="MLP widths, e.g. 256,256.")
@click.option("--channels", default=None, help="Conv channels, e.g. 32,64.")
@click.option("--activation", type=click.Choice(["relu", "elu", "softplus", "tanh"]),
              default="relu", show_default=True)
@click.option("--sigma", "sigma_mode", type=click.Choice(["learned", "floor", "fixed"]),
              default="learned", show_default=True,
              help="Encoder sigma: learned, tau + learned (--tau), or constant (--fixed-sigma).")
@click.option("--tau", type=float, default=None, help="Sigma floor for --sigma floor.")
@click.option("--fixed-sigma", type=float, default=None, help="Sigma for --sigma fixed.")
@click.option("--likelihood", type=click.Choice(["bernoulli", "gaussian"]),
              default="bernoulli", show_default=True)
@click.option("--gaussian-scale", type=float, default=0.1, show_default=True)
@click.option("--beta", type=float, default=1.0, show_default=True,
              help="KL weight: 1 is the ELBO, any other positive value a beta-VAE.")
@click.option("--epochs", type=int, default=200, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--patience", type=int, default=15, show_default=True,
              help="Stop after this many epochs without a better held-out ELBO.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Share of the training data held out for early stopping.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
@click.pass_obj
def train_command(argv: list[str], data_spec: str, out: str, arch: str, latent_dim: int,
                  hidden: str | None, channels: str | None, activation: str, sigma_mode: str,
                  tau: float | None, fixed_sigma: float | None, likelihood: str,
                  gaussian_scale: float, beta: float, epochs: int, batch_size: int, lr: float,
                  patience: int, val_fraction: float, seed: int, quiet: bool) -> None:
    """Train a Gaussian-encoder VAE and save a checkpoint with its model card."""
    hparams = {"latent_dim": latent_dim, "activation": activation, "sigma_mode": sigma_mode,
               "likelihood": likelihood, "gaussian_scale": gaussian_scale}
    for key, value in (("hidden", _int_list(hidden, "--hidden")),
                       ("channels", _int_list(channels, "--channels")),
                       ("tau", tau), ("fixed_sigma", fixed_sigma)):
        if value is not None:
            hparams[key] = value
    card = train.train_checkpoint(
        data_spec, out, arch=arch, hparams=hparams, beta=beta, epochs=epochs,
        batch_size=batch_size, lr=lr, patience=patience, val_fraction=val_fraction,
        seed=seed, progress=not quiet, command=shlex.join(["rcert", *argv]))
    click.echo(report.to_json(card), nl=False)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the CLI, turning every user error into one line and exit code 2."""
    args = list(argv) if argv is not None else sys.argv[1:]
    if not args:
        click.echo("rcert: error: missing command: rcert margin or rcert train "
                   "(see rcert --help)", err=True)
        sys.exit(2)
    try:
        # obj carries the arguments so that commands can record how they were run.
        code = cli.main(args=args, prog_name="rcert", standalone_mode=False, obj=args)
    except RcertError as exc:
        click.echo(f"rcert: error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"rcert: error: {exc.format_message()} (see rcert --help)", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("rcert: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
