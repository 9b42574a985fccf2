"""The corpus's vocabulary: the :class:`Case` type and :func:`case`, the constants the runner
reads, the command lines the cases run (``{t}``: the case's folder, ``{m}``: the shipped
models' folder) and what their error messages must say."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
MODELS = ROOT / "models"
#: The shipped 8x8 digits MLP, the model of most cases.
M = "{m}/vae-digits.safetensors"
#: The file a hostile payload creates when it runs.
MARKER = "PWNED"
#: The bytes of every output an earlier run left in a case folder.
OLD = b"bytes an earlier run wrote; a failed run must leave them as they are\n"
#: Outputs an earlier run left in every case folder (a report folder holds two files).
KEPT = ("result.txt", "fig.png", "trained.safetensors", "new.safetensors",
        "report/results.json", "report/summary.md")


@dataclass(frozen=True)
class Case:
    """One bad input: ``rcert ARGV...`` after ``setup(t)`` must exit ``expect_code`` with one
    ``rcert: error:`` line matching ``match``; ``env`` adds environment variables."""

    id: str
    argv: tuple[str, ...]
    setup: Callable[[Path], None] | None = None
    expect_code: int = 2
    match: str = ""
    category: str = ""
    env: tuple[tuple[str, str], ...] = ()


#: Every case, in the order the category functions add them.
CASES: list[Case] = []


def case(id: str, argv, setup=None, *, match: str, category: str, code: int = 2,
         env: dict[str, str] | None = None) -> None:
    """Add a :class:`Case` to :data:`CASES`."""
    CASES.append(Case(id, tuple(argv), setup, code, match, category,
                      tuple((env or {}).items())))


def chain(*setups):
    """One setup that runs ``setups`` in order (``None`` ones skipped)."""
    def run(t: Path) -> None:
        for s in setups:
            if s is not None:
                s(t)
    return run


# ------------------------------------------------------------------ command lines

#: Small enough that a case which does not fail early still ends in seconds.
FAST = ("--limit", "2", "--n-samples", "20", "--quiet")
OUT = ("--output", "{t}/result.txt")
GOOD = "{t}/good.npy"


def margin(model: str = M, *extra: str, data: str | None = GOOD) -> tuple[str, ...]:
    """``rcert margin`` of ``model`` on ``data``, small and fast, into ``result.txt``."""
    return ("margin", "--model", model, *(("--data", data) if data else ()), *FAST, *OUT,
            *extra)


def attack(model: str = M, *extra: str, data: str | None = GOOD) -> tuple[str, ...]:
    """``rcert attack`` of ``model`` on ``data``, small and fast, into ``result.txt``."""
    return ("attack", "--model", model, *(("--data", data) if data else ()), "--L", "0.5",
            "--preset", "fast", "--n-check", "20", "--limit", "2", "--quiet", *OUT, *extra)


def curve(model: str = M, *extra: str, data: str | None = GOOD) -> tuple[str, ...]:
    """``rcert curve`` of ``model`` on ``data`` at two radii, into ``result.txt``."""
    return ("curve", "--model", model, *(("--data", data) if data else ()), "--radii",
            "0,0.5", *FAST, *OUT, *extra)


def report(*models: str, extra: tuple[str, ...] = (), data: str | None = GOOD
           ) -> tuple[str, ...]:
    """``rcert report`` of ``models`` on ``data`` into the ``report`` folder."""
    flags = [x for m in models for x in ("--model", m)]
    return ("report", *flags, *(("--data", data) if data else ()), "--out", "{t}/report",
            *FAST, *extra)


def inspect(model: str, *extra: str) -> tuple[str, ...]:
    """``rcert inspect`` of ``model``."""
    return ("inspect", model, *extra)


def check(config: str = "{t}/rcert.toml", *extra: str) -> tuple[str, ...]:
    """``rcert check`` of ``config`` into the ``report`` folder."""
    return ("check", config, "--out", "{t}/report", "--quiet", *extra)


def plot(*inputs: str, kind: str = "margins", out: str = "{t}/fig.png") -> tuple[str, ...]:
    """``rcert plot KIND`` of ``inputs`` into ``fig.png``."""
    return ("plot", kind, *inputs, "--out", out)


def train(data: str, *extra: str, out: str = "{t}/trained.safetensors") -> tuple[str, ...]:
    """``rcert train`` on ``data`` for one epoch into ``trained.safetensors``."""
    return ("train", "--data", data, "--out", out, "--epochs", "1", "--batch-size", "8",
            "--quiet", *extra)


def convert(src: str, dst: str = "{t}/new.safetensors") -> tuple[str, ...]:
    """``rcert convert`` of ``src`` into ``dst``."""
    return ("convert", src, dst)


# ------------------------------------------------------------------ what messages must say

FIFO = r"named pipe|fifo"
DEVICE = r"device"
FOLDER = r"folder|director"
SOCKET = r"socket"
PICKLE = r"pickl|refus|never runs? code|not allowed|unsafe"
SIZE = (r"declare|damaged|truncated|corrupt|more than|too (big|large)|\bMB\b|\bGB\b|size|"
        r"promises|exceed|larger")
DEEP = r"nest|deep|depth"
NONFINITE = r"\bnan\b|\binf|finite"
#: A safetensors file that declares more than it holds: the message must say so, not call
#: it a corrupt pickle.
DECLARED = (r"header|length|truncated|declare|exceed|too (big|large)|\bMB\b|\bGB\b|"
            r"more than")
#: What a command says of an output that is a link to a device (/dev/null).
LINKED = r"link|/dev/null|device|regular file"
#: What a command says of data it cannot take as it is (no plain array of numbers).
OBJECTS = r"object|pickl|plain array"
