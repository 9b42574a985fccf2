"""Start-up time of the rcert command: --version, --help and margin --limit 1.

Each command runs in a fresh process, interleaved round-robin, ``--repeats`` times; the
median and minimum wall-clock seconds are printed and written to
``benchmarks/results/bench_startup.json`` (or ``--out``). ``--label`` names the run, so a
record taken before a change and one taken after can sit side by side in the README.
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
MODEL = ROOT / "models" / "vae-digits.rcert"


def commands(rcert: str) -> dict[str, list[str]]:
    return {
        "rcert --version": [rcert, "--version"],
        "rcert --help": [rcert, "--help"],
        "rcert margin --limit 1": [rcert, "margin", "--model", str(MODEL), "--limit", "1",
                                   "--quiet"],
    }


def main() -> None:
    p = parser(__doc__, "bench_startup")
    p.add_argument("--label", default="current", help="name of this run in the record")
    p.add_argument("--rcert", default=shutil.which("rcert") or
                   str(Path(sys.executable).with_name("rcert")),
                   help="the rcert executable to time")
    args = p.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    load_before = os.getloadavg()
    cmds = commands(args.rcert)
    samples: dict[str, list[float]] = {name: [] for name in cmds}
    for cmd in cmds.values():  # warm the file cache once
        subprocess.run(cmd, check=True, capture_output=True)
    for _ in range(repeats):
        for name, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            samples[name].append(time.perf_counter() - t0)
    print(f"{'command':<26} {'median s':>9} {'min s':>7}   ({args.label}, {repeats} runs)")
    results = {}
    for name, s in samples.items():
        results[name] = {"median_s": statistics.median(s), "min_s": min(s), "samples_s": s}
        print(f"{name:<26} {statistics.median(s):9.2f} {min(s):7.2f}")
    finish("bench_startup", args.out, load_before, label=args.label, results=results)


if __name__ == "__main__":
    main()
