"""Resumable certification: rows saved as they come, so a rerun computes only what is missing.

Inputs are certified in chunks on a fixed grid (positions ``0..c-1``, ``c..2c-1``, ...), one
:func:`rcert.certify` call per chunk, whether or not a run resumes. Each chunk's rows are
appended to a JSON-lines file as one line and flushed to disk. A rerun with the same
settings reads the complete lines, skips their chunks and computes the rest. A line cut
short by a kill is dropped and its chunk recomputed. Since every chunk is computed by the
same call on the same inputs either way, a resumed run gives the same table, byte for
byte, as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import validate
from rcert.engine.certify import certify
from rcert.errors import RcertError
from rcert.progress import Progress
from rcert.results import schema

FORMAT = "rcert-partial-1"


def run_key(settings: dict[str, Any]) -> str:
    """A short digest of everything that determines the rows: a changed setting starts afresh."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read(path: Path, key: str) -> dict[int, list[dict[str, Any]]]:
    """Complete chunks already saved for this key; drop a torn last line or a stale file."""
    if not path.exists():
        return {}
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    try:
        header = json.loads(lines[0])
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("key") != key:
        path.unlink()
        return {}
    chunks: dict[int, list[dict[str, Any]]] = {}
    good = len(lines[0]) + 1
    for line in lines[1:]:
        try:
            entry = json.loads(line)
            chunks[int(entry["start"])] = entry["rows"]
        except (ValueError, KeyError, TypeError):
            break  # a line cut short by a kill: everything after it is recomputed
        good += len(line) + 1
    if good < len(raw):
        with open(path, "r+b") as handle:
            handle.truncate(good)
    return chunks


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def certify_resumable(model: nn.Module, x: torch.Tensor, index: np.ndarray, *, path: Path,
                      settings: dict[str, Any], chunk: int = 64, progress: bool = False,
                      **certify_args: Any) -> pd.DataFrame:
    """:func:`rcert.certify` over ``x`` in grid chunks, saved to ``path`` as they finish.

    Parameters
    ----------
    path
        The JSON-lines file of finished chunks; created, resumed or (when ``settings``
        differ from the file's) replaced.
    settings
        Everything that determines the rows (model digest, data, certify arguments);
        its digest keys the file.
    chunk
        Inputs per chunk (the grid step): the unit of work that an interruption can lose.
    certify_args
        Passed to :func:`rcert.certify`.
    """
    # Refuse bad settings before touching saved work: a typo must not cost finished chunks.
    validate.check_options(r=certify_args.get("r"), m=certify_args.get("m", 0.5),
                           alpha=certify_args.get("alpha", 0.001),
                           n_samples=certify_args.get("n_samples", 1000))
    validate.check_seed(certify_args.get("seed", 0))
    key = run_key({**settings, "chunk": chunk})
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _read(path, key)
    if not path.exists():
        _append(path, json.dumps({"format": FORMAT, "key": key}))
    starts = range(0, len(x), chunk)
    frames = []
    bar = Progress(len(starts), "chunks", enabled=progress)
    for start in starts:
        if start not in done:
            rows = slice(start, start + chunk)
            df = certify(model, x[rows], index=index[rows], **certify_args)
            records = schema.plain(df.to_dict(orient="records"))
            _append(path, json.dumps({"start": start, "rows": records}))
            done[start] = records
        frames.append(schema.inputs_frame(done[start]))
        bar.update(1)
    bar.close()
    if not frames:
        raise RcertError("no inputs to certify")
    out = pd.concat(frames, ignore_index=True)
    out.attrs["config"] = {k: v for k, v in certify_args.items()
                           if k not in ("device", "memory_mb", "progress")}
    return out
