"""The attack-strength figures of benchmarks/README.md and docs/attacks.md, recomputed from
the recorded run (benchmarks/results/bench_attack_strength.json).

The counts are recomputed here from the margins themselves, with the audit's criterion
written out (a margin is lowered when the other lies below it by more than 2% of it; an
unbroken one by any finite margin), independently of rcert.statistics.summary. A figure
that disagrees with its run fails here, whichever of the two was changed.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = json.loads((ROOT / "benchmarks" / "results" / "bench_attack_strength.json").read_text())
README = (ROOT / "benchmarks" / "README.md").read_text()
ATTACKS_MD = " ".join((ROOT / "docs" / "attacks.md").read_text().split())
#: The attacks of the run, in the order of the README's tables.
ORDER = ["fast", "fast-seed1", "r1-s10-n64", "careful", "careful-seed1", "r1-s10-n512",
         "standard", "thorough", "r5-s50-n128"]


def _lowered(weak: float, strong: float) -> bool:
    if math.isinf(weak):
        return math.isfinite(strong)
    return strong < weak - 0.02 * weak


def _drop(weak: float, strong: float) -> float:
    if weak == strong or weak == 0:
        return 0.0
    return 1.0 if math.isinf(weak) else 1.0 - strong / weak


def _margins(attack: str, results=None) -> list[float]:
    return [m for res in (results or RUN["results"]) for m in res["runs"][attack]["margin"]]


def _count(weak: str, strong: str, results=None) -> int:
    """How many of ``weak``'s margins ``strong`` lowered."""
    return sum(_lowered(w, s) for w, s in zip(_margins(weak, results), _margins(strong, results),
                                               strict=True))


def _max_drop(weak: str, strong: str) -> float:
    return max(0.0, *(_drop(w, s) for w, s in zip(_margins(weak), _margins(strong),
                                                   strict=True)))


def _table(heading: str) -> list[list[str]]:
    """The cells of the README's Markdown table whose header row starts with ``heading``,
    without the header and separator rows."""
    lines = README.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {heading} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_run_is_the_one_the_tables_describe():
    assert list(RUN["results"][0]["runs"]) == ORDER
    assert [res["n_inputs"] for res in RUN["results"]] == [20, 20, 20]


def test_the_pooled_table_of_attacks():
    rows = _table("attack")
    assert len(rows) == len(ORDER)
    for attack, row in zip(ORDER, rows, strict=True):
        run = RUN["results"][0]["runs"][attack]
        margins = _margins(attack)
        seconds = sum(res["runs"][attack]["seconds"] for res in RUN["results"])
        assert row[1:] == [str(run["restarts"]), str(run["steps"]), str(run["n_noise"]),
                           f"{statistics.median(margins):.3f}",
                           str(sum(math.isinf(m) for m in margins)), f"{seconds:.1f}"], attack


def test_the_pooled_table_of_who_lowered_whom():
    rows = _table("row lowers column")
    assert [row[0] for row in rows][3] == "**`careful`**"
    for strong, row in zip(ORDER, rows, strict=True):
        for weak, cell in zip(ORDER, row[1:], strict=True):
            want = "-" if weak == strong else (
                f"{_count(weak, strong)}/{round(100 * _max_drop(weak, strong))}%")
            assert cell == want, (strong, weak)


def test_the_table_per_model_against_careful():
    columns = ["thorough", "r1-s10-n512", "r5-s50-n128", "careful-seed1", "fast"]
    rows = _table("model | `thorough`")
    assert [row[0] for row in rows] == ["vae-digits", "floor0.5-digits", "pythae (foreign)"]
    for res, row in zip(RUN["results"], rows, strict=True):
        want = [f"{_count('careful', other, [res])} / {_count(other, 'careful', [res])}"
                for other in columns]
        assert row[1:] == want, res["model"]


@pytest.mark.parametrize(("row", "attack", "strong"),
                         [(0, "fast", "careful"), (1, "careful", "r5-s50-n128")])
def test_the_audit_table(row, attack, strong):
    # The audit's stronger attack is the run of the table with its knobs: careful audits
    # fast; standard with careful's 128 draws (r5-s50-n128) audits careful.
    cells = _table("audited attack")[row]
    audits = [res["audits"][attack] for res in RUN["results"]]
    lowered = [_count(attack, strong, [res]) for res in RUN["results"]]
    assert [audit["n_lowered"] for audit in audits] == lowered
    assert cells[2] == (f"{' + '.join(map(str, lowered))} = {sum(lowered)} of 60 "
                        f"(largest drop {round(100 * _max_drop(attack, strong))}%)")
    confirmed = sum(p <= 0.001 for audit in audits for p in audit["p_value"])
    assert cells[3] == str(confirmed)
    assert cells[4] == f"{sum(audit['seconds'] for audit in audits):.1f}"


def test_the_audits_p_values_as_the_docs_quote_them():
    fast = [p for res in RUN["results"] for p in res["audits"]["fast"]["p_value"]
            if not math.isnan(p)]
    careful = [p for res in RUN["results"] for p in res["audits"]["careful"]["p_value"]
               if not math.isnan(p)]
    assert len(fast) == 23 and len(careful) == 4
    small = [p for p in fast if p <= 0.03]
    assert len(small) == 6 and min(small) > 0.001
    assert min(careful) >= 0.038
    assert "with `p_value_audit` between 0.001 and 0.03 on six of them" in ATTACKS_MD
    assert "the audit of `fast` gave `p_value_audit` ≤ 0.03 on 6 of its 23, the audit of " \
           "`careful` ≥ 0.038 on all 4" in " ".join(README.split())


def test_the_sentences_of_docs_attacks_md():
    c = _count
    said = [
        f"`careful` (128 draws) lowered {c('fast', 'careful')} of 60 of `fast`'s margins, and "
        f"`fast` only {c('careful', 'fast')} of `careful`'s; `thorough` lowered "
        f"{c('fast', 'thorough')} of `fast`'s",
        f"`thorough` lowered {c('careful', 'thorough')} of 60 `careful` margins (the largest "
        f"drop {round(100 * _max_drop('careful', 'thorough'))}%), and `careful` "
        f"{c('thorough', 'careful')} of `thorough`'s; 512 draws lowered "
        f"{c('careful', 'r1-s10-n512')}, and `careful` {c('r1-s10-n512', 'careful')} of theirs",
        f"(the audit below) lowered {c('careful', 'r5-s50-n128')} (largest drop "
        f"{round(100 * _max_drop('careful', 'r5-s50-n128'))}%), and `careful` "
        f"{c('r5-s50-n128', 'careful')} of theirs",
        f"with seed 1 instead of 0, {c('careful', 'careful-seed1')} of 60 `careful` margins "
        f"fall and {c('careful-seed1', 'careful')} rise by more than 2%",
        f"between attacks with the same draws, {c('careful', 'r5-s50-n128')} of 60",
        f"the audit of `careful` lowered {c('careful', 'r5-s50-n128')} of 60 margins",
        f"the audit of `fast` (by `careful`) lowered {c('fast', 'careful')} of 60",
    ]
    for sentence in said:
        assert sentence in ATTACKS_MD, sentence
    # "No stronger attack lowered careful's margins more often than it lowered theirs."
    for stronger in ("r1-s10-n512", "standard", "thorough", "r5-s50-n128"):
        assert c("careful", stronger) <= c(stronger, "careful"), stronger


def test_the_costs_the_docs_quote():
    def seconds(attack):
        return [res["runs"][attack]["seconds"] for res in RUN["results"]]

    assert (f"`careful` took {sum(seconds('careful')):.1f} s for the 60 inputs against "
            f"{sum(seconds('fast')):.1f} s for `fast`, and `thorough` "
            f"{round(sum(seconds('thorough')))} s") in ATTACKS_MD
    audits = [res["audits"]["careful"]["seconds"] for res in RUN["results"]]
    careful = seconds("careful")
    assert (f"The audit of `careful` took {round(min(audits))}-{round(max(audits))} s for 20 "
            f"digits on one thread, where `careful` itself took {min(careful):.1f}-"
            f"{max(careful):.1f} s") in ATTACKS_MD
    ratio = sum(seconds("careful")) / sum(seconds("fast"))
    assert f"`careful` {ratio:.1f}x `fast` here" in " ".join(README.split())
