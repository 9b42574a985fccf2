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

:func:`generate` holds the folder's lock (``.lock``, :func:`rcert.files.locked_folder`) for
the whole run, so a second run into the same folder fails at once and names the first;
it reads the folder back (:func:`verify`) before handing the summary over.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from rcert import checks, plots
from rcert.data import check_limit
from rcert.engine import montecarlo
from rcert.errors import RcertError
from rcert.files import STDOUT, atomic_write, check_writable, locked_folder
from rcert.models import contract, foreign
from rcert.plots import output
from rcert.reading import read_bytes, read_json
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

#: The report's files besides the figures, ``results.json`` (written last) among them.
TEXT_FILES = ("inputs.csv", "summary.md", "junit.xml", "report.html", "results.json")

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


@dataclass(frozen=True)
class _Loaded:
    """One entry of a report, loaded: its model, data, settings and name."""

    entry: ModelEntry
    model: Any
    dataset: Any
    config: CertifyConfig
    name: str


#: A check of each loaded model before any work (``rcert check``'s thresholds): its path
#: and the model; raises a one-line RcertError to refuse it.
Preflight = Callable[[str, Any], None]


def _load_all(entries: list[ModelEntry], run: RunConfig, attack: AttackConfig,
              preflight: Preflight | None = None) -> list[_Loaded]:
    """Every entry's model and data, and its settings checked, before any is certified: a
    bad entry fails before work on the others, and before anything is saved. Names are the
    checkpoints' stems, with ``+`` added when two share one."""
    loaded: list[_Loaded] = []
    for entry in entries:
        path = entry.source.path
        model, dataset = loading.load_with_data(entry.source, data_spec=entry.data,
                                                limit=entry.limit, device=run.device or "cpu")
        if preflight is not None:
            preflight(path, model)
        if entry.empirical and not attack.threat.moves_mean:
            # A deterministic encoder has no sigma to move: every margin would be inf.
            contract.require_sigma(model, "an attack with threat sigma",
                                   "attack with threat mean or both", name=path)
        config = CertifyConfig(**{**entry.certify, "r": loading.radius(
            model, entry.certify.get("r"), path)})
        montecarlo.check_sample_budget(config.n_samples, run.memory_mb)
        name = Path(path).stem
        while name in {item.name for item in loaded}:
            name += "+"
        loaded.append(_Loaded(entry, model, dataset, config, name))
    return loaded


def compute(entries: list[ModelEntry], out: Path, *, attack: AttackConfig = EMPIRICAL_ATTACK,
            run: RunConfig | None = None, exclusive: bool = False,
            preflight: Preflight | None = None) -> Computed:
    """Certify each model of ``entries``, resuming from ``out/.partial``.

    ``attack`` is the attack of the entries with ``empirical``. The results are keyed by
    model name: the checkpoint's stem, with ``+`` added when two share one. Every model is
    loaded, and passed to ``preflight`` when given, before the first is certified.
    ``exclusive`` says the caller holds ``out``'s lock (see
    :func:`rcert.runs.resume.certify_resumable`).
    """
    run = run or RunConfig(device="cpu")
    results: dict[str, dict[str, Any]] = {}
    gallery: dict[str, list[dict[str, Any]]] = {}
    for item in _load_all(entries, run, attack, preflight):
        entry, model, dataset, config, name = (item.entry, item.model, item.dataset,
                                               item.config, item.name)
        with checks.collect(reissue=False) as warned:
            df = resume.certify_resumable(
                model, dataset.x, dataset.index, path=out / ".partial" / f"{name}.jsonl",
                config=config, attack=attack if entry.empirical else None, run=run,
                identity={**loading.identity(model, entry.source),
                          "data": str(dataset.spec), "n": len(dataset)},
                exclusive=exclusive)
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


#: The column each figure plots, which a family a certificate does not cover lacks.
_FIGURE_COLUMNS = {"certified-fraction": "bound_certified", "margins": "bound_certified",
                   "encoder": "sigma_min", EMPIRICAL_FIGURE: "bound_certified"}


def figures(results: dict[str, dict[str, Any]]) -> dict[str, bytes]:
    """The report's plots, as PNG and SVG bytes keyed by file name; each drawn for the models
    that have its column (docs/hierarchical.md), and left out when none has."""
    docs = list(results.values())
    kinds = list(FIGURES)
    if all("empirical" in r["summary"] for r in docs):
        kinds.insert(0, EMPIRICAL_FIGURE)
    out = {}
    for kind in kinds:
        drawn = [r for r in docs if r["inputs"] and _FIGURE_COLUMNS[kind] in r["inputs"][0]]
        if not drawn:
            continue
        figure = plots.PLOTS[kind](drawn)
        for suffix in ("png", "svg"):
            out[f"{kind}.{suffix}"] = output.render(figure, suffix)
    return out


def write(out: Path, computed: Computed,
          verdicts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write the report folder (see the module docstring); return the results document."""
    results = computed.results
    try:
        (out / "plots").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RcertError(f"cannot create folder {out / 'plots'}: {exc.strerror}") from None
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


#: What a second run into a folder in use should do.
LOCK_HINT = "wait for it to finish or use another --out"


@dataclass(frozen=True)
class Written:
    """A report as :func:`generate` wrote it: the ``results.json`` document, and
    ``summary.md`` as read back from the verified folder."""

    document: dict[str, Any]
    summary: str


def generate(entries: list[ModelEntry], out: Path, *,
             attack: AttackConfig = EMPIRICAL_ATTACK, run: RunConfig | None = None,
             verdicts: Callable[[dict[str, dict[str, Any]]], list[dict[str, Any]]]
             | None = None, command: str | None = None,
             preflight: Preflight | None = None) -> Written:
    """Compute and write the report folder ``out``, holding its lock all along.

    ``verdicts``, when given, judges the results (``rcert check``'s thresholds) before
    they are written; ``preflight`` refuses a loaded model before any work
    (:func:`compute`). ``command`` is what the lock records as the holder (default: this
    process's command line). A second run into ``out`` fails at once with a one-line
    RcertError naming the holder; the folder is read back (:func:`verify`) before the
    lock is let go.
    """
    if str(out) == STDOUT:
        raise RcertError("a report is a folder of files, not a stream: give --out a folder "
                         "name rather than - (stdout)")
    with locked_folder(out, "report folder", hint=LOCK_HINT, command=command):
        for name in TEXT_FILES:  # a link to a device, say: refused now, not after the work
            check_writable(out / name)
        computed = compute(entries, out, attack=attack, run=run, exclusive=True,
                           preflight=preflight)
        document = write(out, computed,
                         None if verdicts is None else verdicts(computed.results))
        summary = _verified(out)[1]["summary.md"].decode("utf-8")
    return Written(document, summary)


def _listed(out: Path, document: Any) -> dict[str, str]:
    """The files ``results.json`` lists with their digests, if the list is sound: names of
    files inside ``out``, each with a SHA-256 in hex."""
    files = document.get("files") if isinstance(document, dict) else None
    damaged = f"report folder {out} is damaged: its results.json"
    if not isinstance(files, dict) or not files:
        raise RcertError(f"{damaged} lists no files; rerun the report")
    for name, digest in files.items():
        parts = PurePosixPath(name).parts
        if not parts or parts[0] == "/" or ".." in parts:
            raise RcertError(f"{damaged} names {name!r}, not a file of the folder; "
                             f"rerun the report")
        if not isinstance(digest, str):
            raise RcertError(f"{damaged} gives no digest for {name}; rerun the report")
    return files


def _verified(out: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """``results.json``'s document and every file it lists, by name, each checked against
    its digest (:func:`verify`)."""
    hint = "rerun the report to write it again"
    document = read_json(out / "results.json", "report file", hint)
    contents = {}
    for name, digest in _listed(out, document).items():
        data = read_bytes(out / name, "report file", hint)
        if hashlib.sha256(data).hexdigest() != digest:
            raise RcertError(f"report file {out / name} does not match its digest in "
                             f"results.json: it changed after the report was written; {hint}")
        contents[name] = data
    return document, contents


def verify(out: Path) -> dict[str, Any]:
    """``out/results.json``'s document, if every file it lists is there and matches its
    SHA-256; else a one-line RcertError naming the first file missing or changed."""
    return _verified(out)[0]


def is_complete(out: Path) -> bool:
    """Whether ``out`` holds a complete report: ``results.json`` and matching files
    (:func:`verify`)."""
    try:
        verify(out)
    except RcertError:
        return False
    return True
