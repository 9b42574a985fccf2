"""The bad-input corpus in figures: what each category of hostile input gets, now and before.

Runs ``tests/cli/test_bad_inputs.py`` (every case as its own process, see its docstring) on
the working tree and, with ``--before COMMIT``, on a git worktree of an earlier commit (by
default ``38a21cd``, rcert 0.3.0 before issue 9), with the same cases and the same
expectations. Each outcome is put in one class:

* ``ok``: the documented exit code, one ``rcert: error:`` line that says what is wrong,
  outputs untouched, no payload, in time and memory;
* ``traceback``: a traceback on stderr; ``internal``: exit 70; ``hang``: killed at 30 s;
* ``silent``: exit 0, i.e. bad input taken as good;
* ``files``: the case folder changed (an output replaced or a stray file left);
* ``payload``: a pickle's payload ran; ``memory``: over 1 GB resident;
* ``message``: the right exit code, but the line is missing, doubled or says something else.

Prints the classes per category and in all, the slowest cases and the largest memory, and
writes ``benchmarks/results/bench_bad_inputs.json`` (or ``--out``).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, finish, parser

NAME = "bench_bad_inputs"
TEST = "tests/cli/test_bad_inputs.py"


def run_corpus(source: Path | None, dump: Path) -> float:
    """Run the corpus (on rcert from ``source``, else the installed one); return seconds."""
    env = {**os.environ, "RCERT_BAD_INPUTS_DUMP": str(dump)}
    if source is not None:
        env["BAD_INPUTS_RCERT_SOURCE"] = str(source)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-o", "addopts=", "-W", "ignore", TEST], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if not dump.exists():
        raise SystemExit(f"the corpus did not run:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return json.loads(dump.read_text())["wall_s"]


def outcome_class(case: dict) -> str:
    """The first of the classes (module docstring) that a case's problems show."""
    found = " ".join(case["problems"])
    if case["payload_ran"]:
        return "payload"
    if case["timed_out"]:
        return "hang"
    if "Traceback" in found + case["stderr"]:
        return "traceback"
    if "max RSS" in found:
        return "memory"
    if case["code"] == 70:
        return "internal"
    if case["code"] == 0 and case["expect_code"] != 0:
        return "silent"
    if case["changes"]:
        return "files"
    return "message" if case["problems"] else "ok"


def summarise(dump: dict) -> dict:
    """Classes per category and in all, the slowest cases, the largest memory."""
    per: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for case in dump["cases"]:
        per[case["category"]][outcome_class(case)] += 1
    total = sum(per.values(), collections.Counter())
    cases = dump["cases"]
    slowest = sorted(cases, key=lambda c: -c["wall_s"])[:5]
    largest = sorted(cases, key=lambda c: -(c["maxrss_kb"] or 0))[:3]
    return {"cases": len(cases), "corpus_wall_s": dump["wall_s"], "total": dict(total),
            "per_category": {k: dict(v) for k, v in sorted(per.items())},
            "slowest": [(c["id"], round(c["wall_s"], 2)) for c in slowest],
            "largest_rss_mb": [(c["id"], round((c["maxrss_kb"] or 0) / 1024)) for c in largest],
            "not_ok": {c["id"]: outcome_class(c) for c in cases if outcome_class(c) != "ok"}}


def show(label: str, s: dict) -> None:
    print(f"\n== {label}: {s['cases']} cases in {s['corpus_wall_s']:.0f} s")
    classes = sorted(s["total"], key=lambda k: (k != "ok", k))
    print(f"{'category':<28}" + "".join(f"{c:>10}" for c in classes))
    for category, counts in s["per_category"].items():
        print(f"{category:<28}" + "".join(f"{counts.get(c, 0):>10}" for c in classes))
    print(f"{'all':<28}" + "".join(f"{s['total'].get(c, 0):>10}" for c in classes))
    print("slowest cases (s):", ", ".join(f"{i} {w}" for i, w in s["slowest"]))
    print("largest max RSS (MB):", ", ".join(f"{i} {m}" for i, m in s["largest_rss_mb"]))


def worktree(commit: str, folder: Path) -> Path:
    subprocess.run(["git", "worktree", "add", "--detach", "-f", str(folder), commit], cwd=ROOT,
                   check=True, capture_output=True)
    return folder


def main() -> None:
    p = parser(__doc__, NAME)
    p.add_argument("--before", nargs="?", const="38a21cd", default=None,
                   help="also run the corpus on this earlier commit [38a21cd: 0.3.0]")
    args = p.parse_args()
    load_before = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"now": None}
        if args.before:
            runs[f"before ({args.before})"] = worktree(args.before, Path(tmp) / "before")
        try:
            for label, source in runs.items():
                dump = Path(tmp) / f"{len(results)}.json"
                run_corpus(source, dump)
                results[label] = summarise(json.loads(dump.read_text()))
                show(label, results[label])
        finally:
            if args.before:
                subprocess.run(["git", "worktree", "remove", "--force",
                                str(Path(tmp) / "before")], cwd=ROOT, capture_output=True)
    finish(NAME, args.out, load_before, runs=results)


if __name__ == "__main__":
    main()
