"""The report folder written by ``rcert report`` and ``rcert check``.

Files, for one or several models side by side:

* ``inputs.csv``: every per-input row, with a ``model`` column first;
* ``summary.md``: a Markdown summary fit for a CI job summary;
* ``junit.xml``: one test case per input (failed: a violation; skipped: an abstention),
  and one per threshold when ``rcert check`` ran;
* ``plots/*.png`` and ``plots/*.svg``;
* ``report.html``: one self-contained page embedding the plots, every string escaped,
  nothing loaded from elsewhere;
* ``results.json``: the full results (schema version, one result per model, threshold
  verdicts) and the SHA-256 of every other file. It is written last: a report is complete
  when ``results.json`` exists and the files match its digests.

Every file is written atomically. Before anything is written, the old ``results.json`` is
removed, so a run that fails part-way leaves no report that looks complete.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rcert import checks, plots
from rcert.data import check_limit
from rcert.files import atomic_write
from rcert.models import foreign
from rcert.plots import output
from rcert.results import schema, text
from rcert.results.html import report_html
from rcert.results.junit import junit_xml
from rcert.results.markdown import summary_markdown
from rcert.runs import loading, resume
from rcert.runs.gallery import attacked_deltas, weakest_inputs
from rcert.settings import (
    EMPIRICAL_ATTACK,
    AttackConfig,
    CertifyConfig,
    RunConfig,
    run_record,
)
from rcert.source import ModelSource

#: Figures drawn for every report, and the one that needs ``--empirical``.
FIGURES = ("certified-fraction", "margins", "encoder")
EMPIRICAL_FIGURE = "bound-vs-empirical"


@dataclass(frozen=True)
class ModelEntry:
    """One model of a report: its source, its data, and its certificate settings.

    ``source`` says where the model is and how to read it (a path alone for files that
    describe themselves). ``limit``, when given, must be at least 1. ``certify`` holds the
    :class:`~rcert.settings.CertifyConfig` fields given for this model; ``r`` falls back on
    the checkpoint's recommended r, the rest on the defaults.
    """

    source: ModelSource
    data: str | None = None
    limit: int | None = None
    certify: dict[str, Any] = field(default_factory=dict)
    empirical: bool = False

    def __post_init__(self) -> None:
        # A bare path is a file that describes itself.
        object.__setattr__(self, "source", loading.as_source(self.source))
        if self.limit is not None:
            check_limit(self.limit)  # now, not after the models before this one ran


@dataclass(frozen=True)
class Computed:
    """What a report shows: the result documents keyed by model name, and each model's
    weakest inputs as pictures (:func:`rcert.runs.gallery.weakest_inputs`)."""

    results: dict[str, dict[str, Any]]
    gallery: dict[str, list[dict[str, Any]]]


#: Weakest inputs pictured per model in the HTML report.
GALLERY_SIZE = 6


def compute(entries: list[ModelEntry], out: Path, *, attack: AttackConfig = EMPIRICAL_ATTACK,
            run: RunConfig | None = None) -> Computed:
    """Certify each model of ``entries``, resuming from ``out/.partial``.

    ``attack`` is the attack of the entries with ``empirical``. The results are keyed by
    model name: the checkpoint's stem, with ``+`` added when two share one.
    """
    run = run or RunConfig(device="cpu")
    results: dict[str, dict[str, Any]] = {}
    gallery: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        path = entry.source.path
        model, dataset = loading.load_with_data(entry.source, data_spec=entry.data,
                                                limit=entry.limit, device=run.device or "cpu")
        config = CertifyConfig(**{**entry.certify, "r": loading.radius(
            model, entry.certify.get("r"), path)})
        name = Path(path).stem
        while name in results:
            name += "+"
        with checks.collect(reissue=False) as warned:
            df = resume.certify_resumable(
                model, dataset.x, dataset.index, path=out / ".partial" / f"{name}.jsonl",
                config=config, attack=attack if entry.empirical else None, run=run,
                identity={**loading.identity(model, entry.source),
                          "data": str(dataset.spec), "n": len(dataset)})
        described = {**foreign.describe(model, entry.source), "sha256": model.meta["sha256"]}
        results[name] = schema.result(df, model=described,
                                      config={"data": str(dataset.spec),
                                              **run_record(run)},
                                      warnings=warned)
        deltas = (attacked_deltas(model, dataset.x, df, config, attack, k=GALLERY_SIZE,
                                  run=run) if entry.empirical else None)
        gallery[name] = weakest_inputs(model, dataset.x, df, k=GALLERY_SIZE, deltas=deltas)
    return Computed(results, gallery)


def inputs_csv(results: dict[str, dict[str, Any]]) -> str:
    """All models' per-input rows in one table, ``model`` first."""
    frames = [pd.DataFrame(res["inputs"]).assign(model=name) for name, res in results.items()]
    df = pd.concat(frames, ignore_index=True)
    df = df[["model", *[c for c in df.columns if c != "model"]]]
    return text.to_csv({"inputs": df.to_dict(orient="records")})


def figures(results: dict[str, dict[str, Any]]) -> dict[str, bytes]:
    """The report's plots, as PNG and SVG bytes keyed by file name."""
    docs = list(results.values())
    kinds = list(FIGURES)
    if all("empirical" in r["summary"] for r in docs):
        kinds.insert(0, EMPIRICAL_FIGURE)
    out = {}
    for kind in kinds:
        figure = plots.PLOTS[kind](docs)
        for suffix in ("png", "svg"):
            out[f"{kind}.{suffix}"] = output.render(figure, suffix)
    return out


def write(out: Path, computed: Computed,
          verdicts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write the report folder (see the module docstring); return the results document."""
    results = computed.results
    out.mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    marker = out / "results.json"
    marker.unlink(missing_ok=True)
    images = figures(results)
    files = {"inputs.csv": inputs_csv(results).encode(),
             "summary.md": summary_markdown(results, verdicts).encode(),
             "junit.xml": junit_xml(results, verdicts).encode(),
             **{f"plots/{name}": data for name, data in images.items()},
             "report.html": report_html(results, images, verdicts,
                                        gallery=computed.gallery).encode()}
    for stale in (out / "plots").iterdir():  # figures of an earlier run, e.g. --empirical
        if f"plots/{stale.name}" not in files:
            stale.unlink()
    for name, content in files.items():
        atomic_write(out / name, content)
    document = {"schema_version": schema.REPORT_SCHEMA_VERSION, "kind": schema.REPORT_KIND,
                "models": results, "verdicts": verdicts or [],
                "files": {name: hashlib.sha256(content).hexdigest()
                          for name, content in files.items()}}
    atomic_write(marker, text.to_json(document))
    return document


def is_complete(out: Path) -> bool:
    """Whether ``out`` holds a complete report: ``results.json`` and matching files."""
    try:
        document = json.loads((out / "results.json").read_text())
        return all(hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
                   for name, digest in document["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False
