"""Resumable certification: rows saved as they come, so a rerun computes only what is missing.

Inputs are certified in chunks on a fixed grid (positions ``0..c-1``, ``c..2c-1``, ...), one
:func:`rcert.certify` call per chunk, whether or not a run resumes. Each chunk's rows are
appended to a JSON-lines file as one line, in one write, and flushed to disk. Since every
chunk is computed by the same call on the same inputs either way, a resumed run gives the
same table, byte for byte, as an uninterrupted one.

Every line stands on its own: it carries the file format, the settings key
(:func:`run_key`), its chunk's start, its rows, whose input ids must be the chunk's, and the
SHA-256 of all of these, so a line changed after it was written is never used. A
rerun uses only the lines that pass all of these checks for its own key, and recomputes
every other chunk. A line under another key (a run with other settings, even one writing
the same file at the same time), a line cut short by a kill, or anything else unreadable
is never used, and the lines after it are judged on their own. Without the folder's lock
the file is only ever appended to, never truncated or replaced, so a run cannot destroy
the lines another process is writing; a caller that holds the lock (``exclusive``) drops
the unusable lines from the file instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
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
from rcert.files import atomic_write
from rcert.progress import Progress
from rcert.reading import kind_of, parse_json, read_bytes
from rcert.results import schema
from rcert.settings import AttackConfig, CertifyConfig, RunConfig, as_dict

FORMAT = "rcert-partial-3"

_HINT = "remove it; the run recomputes what it held"


def run_key(settings: dict[str, Any]) -> str:
    """A short digest of everything that determines the rows: a changed setting starts afresh."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _chunk(line: bytes, key: str, index: np.ndarray, chunk: int
           ) -> tuple[int, dict[str, Any]] | None:
    """The start and content (``rows``, ``warnings``) of a saved chunk line, or None if the
    line is not one of this key's chunks, whole and for the right inputs."""
    try:
        entry = parse_json(line.decode("utf-8"), "resume line")
    except (UnicodeDecodeError, RcertError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("key") != key:
        return None
    if entry.get("sha256") != _digest({k: v for k, v in entry.items() if k != "sha256"}):
        return None  # damaged or edited since it was written
    start, rows, warnings = entry.get("start"), entry.get("rows"), entry.get("warnings")
    if type(start) is not int or start % chunk or not 0 <= start < len(index):
        return None
    if not isinstance(rows, list) or not isinstance(warnings, list):
        return None
    ids = [row.get("index") if isinstance(row, dict) else None for row in rows]
    if ids != index[start:start + chunk].tolist():
        return None
    if not all(isinstance(w, dict) and isinstance(w.get("code"), str)
               and isinstance(w.get("message"), str) for w in warnings):
        return None
    return start, {"rows": rows, "warnings": warnings}


def _digest(content: dict[str, Any]) -> str:
    """The SHA-256 of a chunk line's content, as canonical JSON: a line whose bytes changed
    after it was written (a flipped bit, an edit) is never used."""
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _line(content: dict[str, Any]) -> bytes:
    """A chunk line: ``content`` with its digest, and a newline."""
    return (json.dumps({**content, "sha256": _digest(content)}) + "\n").encode()


def _read(path: Path, key: str, index: np.ndarray, chunk: int, *, exclusive: bool
          ) -> dict[int, dict[str, Any]]:
    """The chunks saved under ``key`` (``rows`` and ``warnings`` by start); every other line
    is left out, and, when ``exclusive``, removed from the file."""
    if not os.path.lexists(path):
        return {}
    raw = read_bytes(path, "resume file", _HINT, document=True)
    chunks: dict[int, dict[str, Any]] = {}
    kept = []
    # The last piece has no newline: empty, or a line cut short by a kill.
    for line in raw.split(b"\n")[:-1]:
        found = _chunk(line, key, index, chunk)
        if found is not None and found[0] not in chunks:
            chunks[found[0]] = found[1]
            kept.append(line + b"\n")
    if exclusive and b"".join(kept) != raw:
        atomic_write(path, b"".join(kept))
    return chunks


def _append(path: Path, line: bytes) -> None:
    """Add ``line`` (newline included) to the file in one write, flushed to disk.

    A file that ends in a line cut short gets a newline first, so that the torn bytes stay
    a line of their own rather than spoiling this one.
    """
    try:
        # Made with the first line, so a run that fails before it leaves no folder behind.
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_NONBLOCK: a named pipe put in the file's place is refused, not waited on.
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK
                     | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise RcertError(f"cannot write resume file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RcertError(f"resume file {path} is {kind_of(info.st_mode)}, not a regular "
                             f"file; {_HINT}")
        if info.st_size and os.pread(fd, 1, info.st_size - 1) != b"\n":
            line = b"\n" + line
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        raise RcertError(f"cannot write resume file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _key(config: CertifyConfig, attack: AttackConfig | None, run: RunConfig,
         identity: dict[str, Any] | None, chunk: int) -> str:
    return run_key({**(identity or {}), "certify": as_dict(config),
                    "attack": None if attack is None else as_dict(attack),
                    "device": run.device, "chunk": chunk, "rcert_version": _version()})


def certify_resumable(model: nn.Module, x: torch.Tensor, index: np.ndarray, *, path: Path,
                      config: CertifyConfig, attack: AttackConfig | None = None,
                      run: RunConfig | None = None, identity: dict[str, Any] | None = None,
                      chunk: int = 64, exclusive: bool = False) -> pd.DataFrame:
    """Certificates (and attacks when asked) over ``x`` in grid chunks, saved as they finish.

    Parameters
    ----------
    path
        The JSON-lines file of finished chunks: created, or resumed from the lines saved
        under this run's key (see the module docstring).
    config, attack, run
        The certificate, the attack (None: no attack) and the run settings.
    identity
        What identifies the model and data (weights digest, architecture, data spec, size).
        The resume key hashes it with ``config``, ``attack``, the device, the chunk size
        and the rcert version: any change starts afresh.
    chunk
        Inputs per chunk (the grid step): the unit of work that an interruption can lose.
    exclusive
        The caller holds the lock of ``path``'s folder (:func:`rcert.files.locked_folder`),
        so no other process writes ``path``: the lines this run cannot use (other settings,
        torn bytes) are dropped from the file rather than kept. Leave it False otherwise;
        the file is then only appended to.

    The verdicts of an attacked run (``violation``) are judged again over all inputs once
    every chunk is done, so the family-wise correction covers the whole run, however it
    was chunked or resumed. Likewise the attack-strength audit's inputs are chosen from all
    of ``index`` (:func:`rcert.evaluation.audit.audit_subset`) and its warning is judged on
    the whole run.
    """
    run = run or RunConfig()
    key = _key(config, attack, run, identity, chunk)
    starts = range(0, len(x), chunk)
    if not starts:
        raise RcertError("no inputs to certify")
    done = _read(path, key, np.asarray(index), chunk, exclusive=exclusive)
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
            _append(path, _line({"format": FORMAT, "key": key, "start": start,
                                 **done[start]}))
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
