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

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import checks
from rcert.engine.certify import certify
from rcert.errors import RcertError
from rcert.evaluation.audit import audit_subset, check_strength
from rcert.evaluation.empirical import record
from rcert.evaluation.verdicts import attack_certificates, judge
from rcert.progress import Progress
from rcert.results import schema
from rcert.settings import AttackConfig, CertifyConfig, RunConfig, as_dict

FORMAT = "rcert-partial-2"


def run_key(settings: dict[str, Any]) -> str:
    """A short digest of everything that determines the rows: a changed setting starts afresh."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read(path: Path, key: str) -> dict[int, dict[str, Any]]:
    """Complete chunks already saved for this key (``rows`` and ``warnings`` by start);
    drop a torn last line or a stale file."""
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
    chunks: dict[int, dict[str, Any]] = {}
    good = len(lines[0]) + 1
    for line in lines[1:]:
        try:
            entry = json.loads(line)
            if not isinstance(entry["rows"], list) or not isinstance(entry["warnings"], list):
                raise TypeError
            chunks[int(entry["start"])] = {"rows": entry["rows"],
                                           "warnings": entry["warnings"]}
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
                      config: CertifyConfig, attack: AttackConfig | None = None,
                      run: RunConfig | None = None, identity: dict[str, Any] | None = None,
                      chunk: int = 64) -> pd.DataFrame:
    """Certificates (and attacks when asked) over ``x`` in grid chunks, saved as they finish.

    Parameters
    ----------
    path
        The JSON-lines file of finished chunks; created, resumed or (when the key differs
        from the file's) replaced.
    config, attack, run
        The certificate, the attack (None: no attack) and the run settings.
    identity
        What identifies the model and data (weights digest, architecture, data spec, size).
        The resume key hashes it with ``config``, ``attack``, the device, the chunk size
        and the rcert version: any change starts afresh.
    chunk
        Inputs per chunk (the grid step): the unit of work that an interruption can lose.

    The verdicts of an attacked run (``violation``) are judged again over all inputs once
    every chunk is done, so the family-wise correction covers the whole run, however it
    was chunked or resumed. Likewise the attack-strength audit's inputs are chosen from all
    of ``index`` (:func:`rcert.evaluation.audit.audit_subset`) and its warning is judged on
    the whole run.
    """
    run = run or RunConfig()
    key = run_key({**(identity or {}), "certify": as_dict(config),
                   "attack": None if attack is None else as_dict(attack),
                   "device": run.device, "chunk": chunk, "rcert_version": _version()})
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _read(path, key)
    if not path.exists():
        _append(path, json.dumps({"format": FORMAT, "key": key}))
    starts = range(0, len(x), chunk)
    if not starts:
        raise RcertError("no inputs to certify")
    quiet = dataclasses.replace(run, progress=False)
    # Chosen from the whole run's ids, so that every chunk audits its share of one subset.
    audited = (audit_subset(index, config.seed, attack.audit)
               if attack is not None and attack.audit else None)
    frames = []
    bar = Progress(len(starts), "chunks", enabled=run.progress)
    for start in starts:
        if start not in done:
            rows = slice(start, start + chunk)
            with checks.collect(reissue=False) as warned:
                df = certify(model, x[rows], config, index=index[rows], run=quiet)
                if attack is not None:
                    df = attack_certificates(df, model, x[rows], config, attack,
                                             index=index[rows], run=quiet, family=len(x),
                                             audited=audited)
            done[start] = {"rows": schema.plain(df.to_dict(orient="records")),
                           "warnings": warned}
            _append(path, json.dumps({"start": start, **done[start]}))
        frames.append(schema.inputs_frame(done[start]["rows"]))
        bar.update(1)
    bar.close()
    # Saved with each chunk and issued again in chunk order, so a resumed run reports the
    # same warnings as an uninterrupted one.
    for entry in {json.dumps(w, sort_keys=True): w
                  for start in starts for w in done[start]["warnings"]}.values():
        checks.warn(entry["code"], entry["message"])
    out = pd.concat(frames, ignore_index=True)
    config_block = as_dict(config)
    if attack is not None:
        out = judge(out, alpha=config.alpha, correction=attack.correction)
        check_strength(out, config, attack)
        config_block["empirical"] = record(config, attack)
    out.attrs["config"] = config_block
    return out


def _version() -> str:
    from rcert import __version__

    return __version__
