"""Start-up time of the rcert command: --version, --help and margin --limit 1.

Each command runs in a fresh process, ``--repeats`` times, round-robin over the commands
and over the executables being compared (``--rcert LABEL=PATH``, repeatable), so a busy
machine slows all of them alike. Medians and minimums of wall-clock seconds are printed
and written to ``benchmarks/results/bench_startup.json`` (or ``--out``).

To compare with the code before a change, make an executable that runs it, e.g. for a git
worktree of commit 3038d47 (before issue 7) at /tmp/rcert-before::

    printf '#!/bin/sh\\ncd /tmp/rcert-before && PYTHONPATH=/tmp/rcert-before exec '\\
    '.venv/bin/python -m rcert.cli "$@"\\n' > /tmp/rcert-before-bin  # python: absolute path
    python benchmarks/bench_startup.py --rcert before=/tmp/rcert-before-bin \\
        --rcert after=.venv/bin/rcert
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import finish, parser

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "vae-digits.safetensors"


def commands(rcert: str) -> dict[str, list[str]]:
    return {
        "rcert --version": [rcert, "--version"],
        "rcert --help": [rcert, "--help"],
        "rcert margin --limit 1": [rcert, "margin", "--model", str(MODEL), "--limit", "1",
                                   "--quiet"],
    }


def _executables(given: list[str]) -> dict[str, str]:
    default = shutil.which("rcert") or str(Path(sys.executable).with_name("rcert"))
    if not given:
        return {"current": default}
    return dict(item.split("=", 1) if "=" in item else ("current", item) for item in given)


def main() -> None:
    p = parser(__doc__, "bench_startup")
    p.add_argument("--rcert", action="append", default=[],
                   help="LABEL=PATH of an rcert executable to time (repeatable)")
    args = p.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    load_before = os.getloadavg()
    runs = {(label, name): cmd for label, path in _executables(args.rcert).items()
            for name, cmd in commands(path).items()}
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    for cmd in runs.values():  # warm the file cache once
        subprocess.run(cmd, check=True, capture_output=True)
    for _ in range(repeats):
        for key, cmd in runs.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            samples[key].append(time.perf_counter() - t0)
    print(f"{'executable':<12} {'command':<26} {'median s':>9} {'min s':>7}   ({repeats} runs)")
    results: dict[str, dict] = {}
    for (label, name), s in samples.items():
        results.setdefault(label, {})[name] = {"median_s": statistics.median(s),
                                               "min_s": min(s), "samples_s": s}
        print(f"{label:<12} {name:<26} {statistics.median(s):9.2f} {min(s):7.2f}")
    finish("bench_startup", args.out, load_before, results=results)


if __name__ == "__main__":
    main()
