"""``rcert check``: certification thresholds for CI, from a TOML file.

```toml
[[model]]
path = "models/vae-digits.safetensors"   # required; the rest is optional
r = 0.75
data = "digits:test"
limit = 200
n_samples = 1000
alpha = 0.001
m = 0.5
seed = 0
empirical = true
# A foreign model says how to read it with the fields of rcert.source.ModelSource:
# library = "pythae" | "pytorch-vae" | "beta-tcvae", arch = "arch.toml",
# factory = "mypkg.models:build_vae", factory_args = {latent_dim = 10},
# sigma = "logvar", data_range = [0, 1], input_shape = [1, 28, 28], trust_pickles = false

[attack]                           # optional: how hard the attacks try (empirical = true)
preset = "standard"                # careful (default), fast, standard or thorough
threat = "mean"                    # mean (the certificates' threat model), sigma or both
n_check = 400                      # and any other AttackConfig field: restarts, steps,
correction = "holm"                # n_noise, optimizer, resolution

[run]                              # optional
device = "cpu"
memory_mb = 256
allow = ["decoder-range"]          # model checks allowed to fail (recorded in the results)

[thresholds]
min_mean_margin = 0.04          # mean bound_certified over the inputs
min_certified_fraction = 0.8    # share of inputs certified with bound_certified >= at_radius
at_radius = 0.01
max_violations = 0              # needs empirical = true; family-wise over the inputs (Holm)
max_abstain_fraction = 0.1
baseline = "previous/results.json"   # a results.json of an earlier report
max_regression = 0.1            # mean bound_certified may drop by at most 10% against it
```

Every threshold applies to every model. A verdict is a dict with ``model``, ``threshold``,
``value``, ``limit``, ``passed`` and ``message``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcert.errors import RcertError
from rcert.reading import read_json, read_toml
from rcert.results import schema
from rcert.runs.report import ModelEntry
from rcert.settings import (
    EMPIRICAL_ATTACK,
    AttackConfig,
    CertifyConfig,
    RunConfig,
    field_type,
    merge,
)
from rcert.source import ModelSource
from rcert.statistics import summary

THRESHOLD_KEYS = {"min_mean_margin": float, "min_certified_fraction": float,
                  "at_radius": float, "max_violations": int, "max_abstain_fraction": float,
                  "baseline": str, "max_regression": float}
#: Each settings table with its defaults; it takes every field of their class by name.
TABLES = {"attack": EMPIRICAL_ATTACK, "run": RunConfig(device="cpu")}


@dataclass(frozen=True)
class CheckConfig:
    """A parsed ``rcert check`` config: the models, the shared attack and run, thresholds."""

    models: list[ModelEntry]
    attack: AttackConfig
    run: RunConfig
    thresholds: dict[str, Any]


def _toml_type(f: dataclasses.Field) -> type:
    """What a TOML key of settings field ``f`` holds: an array for tuples, a table for dicts."""
    kind = str(f.type)
    return list if kind.startswith("tuple") else dict if kind.startswith("dict") else \
        field_type(f)


def _field_types(cls: type, leave_out: tuple[str, ...] = ()) -> dict[str, type]:
    return {f.name: _toml_type(f) for f in dataclasses.fields(cls) if f.name not in leave_out}


#: What a ``[[model]]`` table takes: how to read the model (the fields of ModelSource, path
#: first), the keys of its ModelEntry, and the fields of its certificate (CertifyConfig).
SOURCE_KEYS = _field_types(ModelSource)
ENTRY_KEYS = _field_types(ModelEntry, leave_out=("source", "certify"))
CERTIFY_KEYS = _field_types(CertifyConfig)

_KIND_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               list: "an array", dict: "a table"}


def _typed(table: Any, keys: dict[str, type], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise RcertError(f"{where}: must be a table of key = value pairs, got {table!r}")
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise RcertError(f"{where}: unknown key {unknown[0]!r}; known keys: "
                         f"{', '.join(keys)}")
    out = {}
    for key, value in table.items():
        kind = keys[key]
        ok = (isinstance(value, bool) if kind is bool else
              isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float
              else isinstance(value, kind) and not isinstance(value, bool))
        if not ok:
            raise RcertError(f"{where}: {key} must be {_KIND_WORDS[kind]}, got {value!r}")
        out[key] = float(value) if kind is float else value
    return out


def _models(path: Path, tables: Any) -> list[ModelEntry]:
    if not isinstance(tables, list) or not tables:
        raise RcertError(f"{path}: no [[model]] table; add one with at least a path")
    keys = {"path": SOURCE_KEYS["path"], **ENTRY_KEYS, **CERTIFY_KEYS, **SOURCE_KEYS}
    entries = []
    for i, table in enumerate(tables):
        where = f"{path} [[model]] #{i + 1}"
        entry = _typed(table, keys, where)
        if "path" not in entry:
            raise RcertError(f"{where}: path is required")
        reading = {k: v for k, v in entry.items() if k in SOURCE_KEYS}
        given = {k: v for k, v in entry.items() if k in CERTIFY_KEYS}
        try:  # check the settings now, with any r, before long work
            CertifyConfig(**{"r": 1.0, **given})
            entries.append(ModelEntry(source=_source(path, reading), certify=given,
                                      **{k: v for k, v in entry.items() if k in ENTRY_KEYS}))
        except RcertError as exc:
            raise RcertError(f"{where}: {exc}") from None
    return entries


def _source(config: Path, reading: dict[str, Any]) -> ModelSource:
    """The model's source; its files (the model, an architecture description) are relative
    to the config's folder."""
    files = {k: str(config.parent / reading[k]) for k in ("path", "arch")
             if isinstance(reading.get(k), str)}
    return ModelSource(**{**reading, **files})


def _settings(path: Path, config: dict[str, Any], name: str) -> Any:
    base = TABLES[name]
    # progress is the command's --quiet, not a setting of the report.
    keys = _field_types(type(base), leave_out=("progress",))
    values = _typed(config.get(name, {}), keys, f"{path} [{name}]")
    try:
        return merge(type(base), base, **values)
    except RcertError as exc:
        raise RcertError(f"{path} [{name}]: {exc}") from None


def load_config(path: str | Path) -> CheckConfig:
    """Read and check a config; relative paths in it are relative to the config's folder."""
    path = Path(path)
    config = read_toml(path, "config", "pass the path of an rcert check config (see docs/ci.md)")
    unknown = sorted(set(config) - {"model", "thresholds", *TABLES})
    if unknown:
        raise RcertError(f"{path}: unknown table {unknown[0]!r}; use [[model]], [attack], "
                         f"[run] and [thresholds]")
    models = _models(path, config.get("model"))
    attack, run = _settings(path, config, "attack"), _settings(path, config, "run")
    thresholds = _thresholds(path, config.get("thresholds", {}), models)
    return CheckConfig(models, attack, run, thresholds)


def _thresholds(path: Path, table: Any, models: list[ModelEntry]) -> dict[str, Any]:
    thresholds = _typed(table, THRESHOLD_KEYS, f"{path} [thresholds]")
    if "baseline" in thresholds:
        thresholds["baseline"] = str(path.parent / thresholds["baseline"])
    if "max_violations" in thresholds and not all(m.empirical for m in models):
        raise RcertError(f"{path}: max_violations needs empirical = true in every [[model]]")
    for key in ("min_certified_fraction", "max_abstain_fraction"):
        if key in thresholds and not 0 <= thresholds[key] <= 1:
            raise RcertError(f"{path}: {key} must lie in [0, 1], got {thresholds[key]}")
    if "max_regression" in thresholds and "baseline" not in thresholds:
        raise RcertError(f"{path}: max_regression needs a baseline")
    for key in ("at_radius", "max_regression", "min_mean_margin"):
        if key in thresholds and not thresholds[key] >= 0:  # refuses nan too
            raise RcertError(f"{path}: {key} must be >= 0, got {thresholds[key]}")
    if "baseline" in thresholds:
        _baseline(thresholds["baseline"])  # a bad baseline fails now, not after the runs
    if thresholds.get("max_violations", 0) < 0:
        raise RcertError(f"{path}: max_violations must be >= 0")
    return thresholds


_BASELINE_HINT = "point baseline at the results.json of an earlier report"
#: Where a report's results.json holds a model's mean certified margin, which max_regression
#: compares against.
_MEAN_MARGIN = ("summary", "mean_margin", "bound_certified")


def _baseline(path: str) -> dict[str, float]:
    """Each model's mean certified margin in the baseline ``path``, the results.json of a
    report, its schema checked in full: a bad baseline is one line naming the file and field."""
    where = f"baseline {path}"
    document = schema.check_report(read_json(path, "baseline", _BASELINE_HINT), where,
                                   _BASELINE_HINT)
    means = {}
    for name, res in document["models"].items():
        rows = res["inputs"]
        if rows and "bound_certified" not in rows[0]:
            continue  # a family without the certificate: judged as uncovered, not compared
        keys = ("models", name, *_MEAN_MARGIN)
        means[name] = schema.number(schema.lookup(document, keys, where, _BASELINE_HINT),
                                    where, keys, _BASELINE_HINT)
    return means


def verdicts(results: dict[str, dict[str, Any]], thresholds: dict[str, Any]
             ) -> list[dict[str, Any]]:
    """Judge each model's result against each threshold."""
    baseline = _baseline(thresholds["baseline"]) if "baseline" in thresholds else None
    out = []

    def judge(model: str, name: str, value: float, limit: float, passed: bool,
              message: str) -> None:
        out.append({"model": model, "threshold": name, "value": value, "limit": limit,
                    "passed": bool(passed), "message": message})

    for model, res in results.items():
        s = res["summary"]
        df = schema.inputs_frame(res["inputs"])
        if "bound_certified" not in df.columns:
            _uncovered(model, thresholds, baseline, judge, "abstain" in df.columns)
            _abstentions(model, df, thresholds, judge)
            continue
        mean_margin = float(df["bound_certified"].mean())
        if "min_mean_margin" in thresholds:
            limit = thresholds["min_mean_margin"]
            judge(model, "min_mean_margin", mean_margin, limit, mean_margin >= limit,
                  f"mean bound_certified {mean_margin:.4g} < {limit:.4g}")
        if "min_certified_fraction" in thresholds:
            radius = thresholds.get("at_radius", 0.0)
            fraction = summary.certified_fraction(df, [radius], columns=("bound_certified",))
            share = float(fraction["bound_certified"].iloc[0])
            limit = thresholds["min_certified_fraction"]
            judge(model, f"min_certified_fraction at radius {radius:g}", share, limit,
                  share >= limit,
                  f"{share:.1%} certified at radius {radius:g}, below {limit:.1%}")
        if "max_violations" in thresholds:
            count = s["empirical"]["n_violations"]
            limit = thresholds["max_violations"]
            judge(model, "max_violations", count, limit, count <= limit,
                  f"{count} inputs where an attack beat the certificate: "
                  f"{s['empirical']['violations']}")
        _abstentions(model, df, thresholds, judge)
        if baseline is not None:
            old = baseline.get(model)
            if old is None:
                judge(model, "max_regression", mean_margin, float("nan"), False,
                      f"model {model} is not in the baseline; regenerate the baseline")
                continue
            allowed = thresholds.get("max_regression", 0.0)
            floor = old * (1 - allowed)
            judge(model, "max_regression", mean_margin, floor, mean_margin >= floor,
                  f"mean bound_certified fell from {old:.4g} to {mean_margin:.4g}, more "
                  f"than {allowed:.0%}")
    return out


#: The thresholds that judge ``bound_certified``.
_BOUND_THRESHOLDS = ("min_mean_margin", "min_certified_fraction", "max_violations")
#: The column each threshold reads: every one is a function of the encoder's sigma.
SIGMA_COLUMNS = {"min_mean_margin": "bound_certified",
                 "min_certified_fraction": "bound_certified (the certified fraction)",
                 "max_violations": "violation (an attack beating bound_certified)",
                 "max_abstain_fraction": "abstain", "baseline": "bound_certified",
                 "max_regression": "bound_certified"}


def refuse_deterministic(thresholds: dict[str, Any]) -> Callable[[str, Any], None]:
    """A preflight for :func:`rcert.runs.report.generate`: refuse, before any work, a
    deterministic autoencoder gated on a threshold that reads a column only a Gaussian
    encoder has (SPEC section 9: no statistical certificate, so no bound, abstention or
    certified fraction). A gate on a number that cannot exist is bad input (exit 2), not a
    failed threshold."""
    from rcert.models.contract import require_sigma

    names = [name for name in SIGMA_COLUMNS if name in thresholds]

    def preflight(path: str, model: Any) -> None:
        if names:
            require_sigma(model, f"threshold {names[0]} (it reads "
                          f"{SIGMA_COLUMNS[names[0]]})",
                          "check it in a config without thresholds (its report has Jacobian "
                          "norms and, with empirical = true, empirical margins)", name=path)
    return preflight


def _uncovered(model: str, thresholds: dict[str, Any], baseline: dict[str, float] | None,
               judge: Callable[..., None], abstains: bool = True) -> None:
    """Fail every bound threshold of a model without ``bound_certified`` (a family no
    first-order certificate covers; with ``abstains`` False, a deterministic encoder, which
    has no certificate at all): a gate on a missing number must not pass."""
    names = [n for n in _BOUND_THRESHOLDS if n in thresholds]
    if baseline is not None:
        names.append("max_regression")
    why = ("its family has no first-order certificate, docs/hierarchical.md); gate it on "
           "max_abstain_fraction" if abstains else
           "a deterministic encoder has no certificate, SPEC section 9); check it without "
           "thresholds")
    for name in names:
        judge(model, name, float("nan"), float("nan"), False,
              f"{model} has no bound_certified ({why} or drop {name}")


def _abstentions(model: str, df: Any, thresholds: dict[str, Any],
                 judge: Callable[..., None]) -> None:
    """Judge ``max_abstain_fraction``, for every family with an ``abstain`` column (the
    hierarchical ones without ``bound_certified`` too); fail it for a model without one
    (a deterministic encoder, SPEC section 9: a gate on a missing number must not pass)."""
    if "max_abstain_fraction" not in thresholds:
        return
    limit = thresholds["max_abstain_fraction"]
    if "abstain" not in df.columns:
        judge(model, "max_abstain_fraction", float("nan"), limit, False,
              f"{model} has no abstain column (a deterministic encoder has no certificate "
              f"to abstain from, SPEC section 9); drop max_abstain_fraction")
        return
    share = float(df["abstain"].mean())
    judge(model, "max_abstain_fraction", share, limit, share <= limit,
          f"{share:.1%} of inputs abstained, above {limit:.1%}")


def failed(verdicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The verdicts whose threshold does not hold; ``rcert check`` exits 1 when there are any."""
    return [v for v in verdicts if not v["passed"]]


def verdict_lines(verdicts: list[dict[str, Any]], out: str | Path) -> str:
    """What ``rcert check`` prints: ``PASS model threshold`` or ``FAIL model threshold:
    message`` per verdict, then how many passed and failed and where the report is."""
    lines = [f"PASS {v['model']} {v['threshold']}" if v["passed"]
             else f"FAIL {v['model']} {v['threshold']}: {v['message']}" for v in verdicts]
    n_failed = len(failed(verdicts))
    lines.append(f"{len(verdicts) - n_failed} passed, {n_failed} failed; report in {out}")
    return "\n".join(lines) + "\n"
