"""Resumable certification (``rcert.runs.resume.certify_resumable``).

A run killed after some chunks and then resumed must give the same table, byte for byte,
as an uninterrupted run, computing only the chunks that were missing; a line saved under
other settings, or damaged, is never used. (A real ``rcert report`` killed by SIGKILL and
resumed: tests/runs/test_report_lock.py.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REAL_CERTIFY, CertifyCalls, resumed_run_fixtures

import rcert
import rcert.results.text
import rcert.runs.resume
from rcert.engine.certificates import COLUMNS

N = 11  # inputs: with CHUNK = 3, four chunks (the last one short)
CHUNK = 3
N_CHUNKS = 4


# An untrained 8x8 MLP checkpoint, and the first N digits with ids 100, 107, ...
model, inputs = resumed_run_fixtures(
    "resume-ckpt", latent_dim=4, hidden=(32,), id_step=7, first_id=100,
    inputs=lambda: rcert.load_data("digits:test").subset(N).x)


IDENTITY = {"model": "mlp", "data": "digits:test", "n": N}


def _config(r: float = 0.8, seed: int = 0, n_samples: int = 50) -> rcert.CertifyConfig:
    return rcert.CertifyConfig(r=r, seed=seed, n_samples=n_samples)


def _run(model, inputs, path: Path, *, r: float = 0.8, seed: int = 0,
         n_samples: int = 50, run: rcert.RunConfig | None = None,
         exclusive: bool = False) -> pd.DataFrame:
    x, index = inputs
    return rcert.runs.resume.certify_resumable(
        model, x, index, path=path, config=_config(r, seed, n_samples), identity=IDENTITY,
        chunk=CHUNK, run=run, exclusive=exclusive)


def _csv(df: pd.DataFrame) -> str:
    return rcert.results.text.to_csv(rcert.results.schema.result(df))


@pytest.fixture(scope="module")
def fresh(model, inputs, tmp_path_factory) -> pd.DataFrame:
    """One uninterrupted run with the default settings."""
    return _run(model, inputs, tmp_path_factory.mktemp("fresh") / "run.jsonl")


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


def test_uninterrupted_run_matches_certify_chunk_by_chunk(model, inputs, fresh):
    # Each chunk is one certify call; reading the rows back from JSON changes nothing.
    x, index = inputs
    parts = [rcert.certify(model, x[s:s + CHUNK], index=index[s:s + CHUNK], r=0.8,
                           n_samples=50, seed=0) for s in range(0, N, CHUNK)]
    want = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(fresh, want, check_exact=True)
    assert list(fresh.columns) == list(COLUMNS)


def test_uninterrupted_run_calls_certify_once_per_grid_chunk(model, inputs, tmp_path,
                                                            monkeypatch):
    calls = CertifyCalls()
    monkeypatch.setattr(rcert.runs.resume, "certify", calls)
    _run(model, inputs, tmp_path / "run.jsonl")
    assert calls.calls == N_CHUNKS
    assert calls.sizes == [3, 3, 3, 2]
    lines = _lines(tmp_path / "run.jsonl")
    assert lines[-1] == b""  # every line ends with a newline
    entries = [json.loads(line) for line in lines[:-1]]
    assert [entry["start"] for entry in entries] == [0, 3, 6, 9]
    # Every line carries the format and the settings key: it stands on its own.
    assert {entry["format"] for entry in entries} == {rcert.runs.resume.FORMAT}
    assert len({entry["key"] for entry in entries}) == 1


@pytest.mark.parametrize("killed_on", [1, 2, 4])
def test_killed_then_resumed_equals_uninterrupted(model, inputs, fresh, tmp_path,
                                                  monkeypatch, killed_on):
    path = tmp_path / "run.jsonl"
    with monkeypatch.context() as patch:
        patch.setattr(rcert.runs.resume, "certify", CertifyCalls(fail_on=killed_on))
        with pytest.raises(KeyboardInterrupt):
            _run(model, inputs, path)
    # (No chunk done, no file; else one line per chunk, and "" after the last newline.)
    saved = len(_lines(path)) - 1 if path.exists() else 0
    assert saved == killed_on - 1

    calls = CertifyCalls()
    monkeypatch.setattr(rcert.runs.resume, "certify", calls)
    resumed = _run(model, inputs, path)
    assert calls.calls == N_CHUNKS - saved  # only the missing chunks
    pd.testing.assert_frame_equal(resumed, fresh, check_exact=True)
    assert _csv(resumed) == _csv(fresh)

    # A third run finds every chunk on disk and computes nothing.
    again = CertifyCalls()
    monkeypatch.setattr(rcert.runs.resume, "certify", again)
    pd.testing.assert_frame_equal(_run(model, inputs, path), fresh, check_exact=True)
    assert again.calls == 0


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("cut", [1, 10, -1])
def test_torn_last_line_is_dropped_and_recomputed(model, inputs, fresh, tmp_path,
                                                  monkeypatch, cut, exclusive):
    path = tmp_path / "run.jsonl"
    _run(model, inputs, path)
    raw = path.read_bytes()
    last_start = raw.rstrip(b"\n").rfind(b"\n") + 1
    last_line = raw[last_start:].rstrip(b"\n")
    # Cut the last line: after `cut` bytes, or (-1) just before its closing brace.
    keep = cut if cut > 0 else len(last_line) - 1
    path.write_bytes(raw[:last_start + keep])

    calls = CertifyCalls()
    monkeypatch.setattr(rcert.runs.resume, "certify", calls)
    resumed = _run(model, inputs, path, exclusive=exclusive)
    assert calls.calls == 1
    assert calls.sizes == [2]  # the last, short chunk
    pd.testing.assert_frame_equal(resumed, fresh, check_exact=True)
    assert _csv(resumed) == _csv(fresh)
    if exclusive:  # the torn bytes were cut away, not left in the file
        assert path.read_bytes() == raw
    else:  # never truncated (another process may be writing): the torn bytes end a line
        assert path.read_bytes() == raw[:last_start + keep] + b"\n" + raw[last_start:]
        assert _run(model, inputs, path).equals(fresh)


def test_a_torn_middle_line_costs_only_its_chunk(model, inputs, fresh, tmp_path, monkeypatch):
    path = tmp_path / "run.jsonl"
    _run(model, inputs, path)
    lines = _lines(path)
    lines[1] = lines[1][: len(lines[1]) // 2]  # the chunk at 3 is garbage now
    path.write_bytes(b"\n".join(lines))
    calls = CertifyCalls()
    monkeypatch.setattr(rcert.runs.resume, "certify", calls)
    resumed = _run(model, inputs, path)
    assert calls.calls == 1  # the lines after it stand on their own
    pd.testing.assert_frame_equal(resumed, fresh, check_exact=True)


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("change", [{"seed": 1}, {"r": 0.5}])
def test_changed_settings_never_use_the_old_lines(model, inputs, fresh, tmp_path,
                                                  monkeypatch, change, exclusive):
    path = tmp_path / "run.jsonl"
    _run(model, inputs, path)
    old = path.read_bytes()

    calls = CertifyCalls()
    monkeypatch.setattr(rcert.runs.resume, "certify", calls)
    changed = _run(model, inputs, path, exclusive=exclusive, **change)
    assert calls.calls == N_CHUNKS  # nothing of the old file was reused
    if exclusive:  # the old chunks are gone, not appended to
        assert len(_lines(path)) == N_CHUNKS + 1 and old not in path.read_bytes()
    else:  # only ever appended to: a run with the old settings may still be writing
        assert path.read_bytes().startswith(old) and len(_lines(path)) == 2 * N_CHUNKS + 1

    monkeypatch.setattr(rcert.runs.resume, "certify", REAL_CERTIFY)
    want = _run(model, inputs, tmp_path / "fresh.jsonl", **change)
    pd.testing.assert_frame_equal(changed, want, check_exact=True)
    assert _csv(changed) == _csv(want)
    assert _csv(changed) != _csv(fresh)


def test_a_different_chunk_size_starts_afresh(model, inputs, fresh, tmp_path, monkeypatch):
    x, index = inputs
    path = tmp_path / "run.jsonl"
    _run(model, inputs, path)
    calls = CertifyCalls()
    monkeypatch.setattr(rcert.runs.resume, "certify", calls)
    df = rcert.runs.resume.certify_resumable(model, x, index, path=path, config=_config(),
                                             identity=IDENTITY, chunk=4)
    assert calls.calls == 3
    assert calls.sizes == [4, 4, 3]
    assert df["index"].tolist() == index.tolist()


@pytest.mark.parametrize("content", [b"", b"not json\n", b'{"format": "other"}\n',
                                     b"[1, 2]\n", b"no newline"])
def test_a_foreign_file_is_never_used(model, inputs, fresh, tmp_path, content):
    path = tmp_path / "run.jsonl"
    path.write_bytes(content)
    pd.testing.assert_frame_equal(_run(model, inputs, path), fresh, check_exact=True)
    assert path.read_bytes().startswith(content)  # kept: it may be someone else's
    pd.testing.assert_frame_equal(_run(model, inputs, path, exclusive=True), fresh,
                                  check_exact=True)
    assert all(json.loads(line)["format"] == rcert.runs.resume.FORMAT
               for line in _lines(path)[:-1])  # dropped by the lock's holder


def _planted(line: bytes, damage: str) -> bytes:
    """A saved chunk line, its rows' p_lower doctored (so that using it shows), made
    unusable by ``damage`` and then signed again (a digest that matches), so that the check
    under test, not the digest, is what must refuse it; except for ``edited``, whose digest
    is the original's, and ``none``, a well-formed line that is used."""
    entry = json.loads(line)
    entry["rows"] = [{**row, "p_lower": 0.123} for row in entry["rows"]]
    if damage == "other key":
        entry["key"] = "0" * 16
    elif damage == "old format":
        entry["format"] = "rcert-partial-2"
    elif damage == "other inputs":
        entry["rows"] = [{**row, "index": row["index"] + 1} for row in entry["rows"]]
    elif damage == "off the grid":
        entry["start"] += 1
    if damage != "edited":
        content = {k: v for k, v in entry.items() if k != "sha256"}
        entry["sha256"] = rcert.runs.resume._digest(content)
    return json.dumps(entry).encode()


def test_a_well_formed_planted_chunk_is_used_so_the_test_below_can_see_use(model, inputs,
                                                                             tmp_path):
    path = tmp_path / "run.jsonl"
    _run(model, inputs, path)
    lines = _lines(path)
    path.write_bytes(b"\n".join([_planted(lines[1], "none"), lines[0], *lines[2:]]))
    assert (_run(model, inputs, path)["p_lower"] == 0.123).sum() == 3


@pytest.mark.parametrize("damage", ["other key", "old format", "other inputs",
                                    "off the grid", "edited"])
def test_a_planted_chunk_is_never_used(model, inputs, fresh, tmp_path, monkeypatch, damage):
    path = tmp_path / "run.jsonl"
    _run(model, inputs, path)
    lines = _lines(path)
    # The chunk at 3 is there only as the planted line, first in the file.
    path.write_bytes(b"\n".join([_planted(lines[1], damage), lines[0], *lines[2:]]))
    calls = CertifyCalls()
    monkeypatch.setattr(rcert.runs.resume, "certify", calls)
    resumed = _run(model, inputs, path)
    assert calls.calls == 1 and calls.sizes == [3]
    pd.testing.assert_frame_equal(resumed, fresh, check_exact=True)
    assert _csv(resumed) == _csv(fresh)


def test_two_settings_writing_one_file_at_once_never_mix(model, inputs, fresh, tmp_path,
                                                         monkeypatch):
    # Issue 9: a run at another r, started while this one was between chunks, once replaced
    # the file; this run then appended to it, and the other's report carried its rows.
    path = tmp_path / "run.jsonl"
    other: list[pd.DataFrame] = []

    def interleaved(model_, x, *args, **kwargs):
        if not other:
            with monkeypatch.context() as patch:
                patch.setattr(rcert.runs.resume, "certify", REAL_CERTIFY)
                other.append(_run(model, inputs, path, r=0.5))
        return REAL_CERTIFY(model_, x, *args, **kwargs)

    monkeypatch.setattr(rcert.runs.resume, "certify", interleaved)
    mine = _run(model, inputs, path)
    monkeypatch.setattr(rcert.runs.resume, "certify", REAL_CERTIFY)
    pd.testing.assert_frame_equal(mine, fresh, check_exact=True)
    want = _run(model, inputs, tmp_path / "alone.jsonl", r=0.5)
    pd.testing.assert_frame_equal(other[0], want, check_exact=True)
    # Both runs' chunks are in the file, and each rerun finds all of its own there.
    calls = CertifyCalls()
    monkeypatch.setattr(rcert.runs.resume, "certify", calls)
    pd.testing.assert_frame_equal(_run(model, inputs, path), fresh, check_exact=True)
    pd.testing.assert_frame_equal(_run(model, inputs, path, r=0.5), want, check_exact=True)
    assert calls.calls == 0


def test_a_resume_file_that_is_not_a_regular_file_is_refused(model, inputs, tmp_path):
    path = tmp_path / "run.jsonl"
    os.mkfifo(path)
    with pytest.raises(rcert.RcertError, match=r"run.jsonl is a named pipe \(FIFO\), not a "
                                               r"regular file; remove it"):
        _run(model, inputs, path)


def test_rows_are_never_duplicated_or_lost(model, inputs, fresh, tmp_path, monkeypatch):
    _, index = inputs
    assert fresh["index"].tolist() == index.tolist()
    # Interrupt twice at different chunks, tear a line, then finish.
    path = tmp_path / "run.jsonl"
    for fail_on in (2, 3):
        with monkeypatch.context() as patch:
            patch.setattr(rcert.runs.resume, "certify", CertifyCalls(fail_on=fail_on))
            with pytest.raises(KeyboardInterrupt):
                _run(model, inputs, path)
    raw = path.read_bytes()
    path.write_bytes(raw[:-5])
    df = _run(model, inputs, path, exclusive=True)
    assert df["index"].tolist() == index.tolist()
    assert df["index"].is_unique
    assert len(df) == N
    starts = [json.loads(line)["start"] for line in _lines(path)[:-1]]
    assert sorted(starts) == [0, 3, 6, 9]  # one line per chunk in the file too


def test_resume_keeps_dtypes(model, inputs, fresh):
    x, index = inputs
    direct = rcert.certify(model, x, index=index, r=0.8, n_samples=50, seed=0)
    pd.testing.assert_series_equal(fresh.dtypes, direct.dtypes)
    assert fresh["abstain"].dtype == bool
    for col in ("index", "k", "n"):
        assert fresh[col].dtype == np.int64, col


def test_a_chunk_mixing_inf_and_finite_values_reads_back_as_float(model, inputs, tmp_path,
                                                                  monkeypatch):
    # A chunk whose column mixes numbers and "inf" strings in JSON must come back as floats.
    def some_inf(model, x, *args, **kwargs):
        df = REAL_CERTIFY(model, x, *args, **kwargs)
        df.loc[df.index % 2 == 0, "r_min_upper"] = np.inf
        df.loc[df.index % 2 == 1, "latent_margin"] = -np.inf
        return df

    path = tmp_path / "run.jsonl"
    monkeypatch.setattr(rcert.runs.resume, "certify", some_inf)
    written = _run(model, inputs, path)
    assert b'"inf"' in path.read_bytes() and b'"-inf"' in path.read_bytes()
    monkeypatch.setattr(rcert.runs.resume, "certify", CertifyCalls(fail_on=1))  # must not be called
    read = _run(model, inputs, path)
    for df in (written, read):
        assert df["r_min_upper"].dtype == np.float64
        assert df["latent_margin"].dtype == np.float64
        assert np.isinf(df["r_min_upper"]).sum() == 7  # rows 0 and 2 of every chunk
    pd.testing.assert_frame_equal(read, written, check_exact=True)


def test_an_all_inf_column_reads_back_as_float(model, inputs, tmp_path):
    # With 2 noise draws r_min_upper (the upper confidence bound) is inf for every input.
    x, index = inputs
    df = _run(model, inputs, tmp_path / "run.jsonl", n_samples=2)
    want = pd.concat([rcert.certify(model, x[s:s + CHUNK], index=index[s:s + CHUNK], r=0.8,
                                    n_samples=2, seed=0) for s in range(0, N, CHUNK)],
                     ignore_index=True)
    assert np.isinf(want["r_min_upper"]).all()
    assert df["r_min_upper"].dtype == np.float64
    pd.testing.assert_frame_equal(df, want, check_exact=True)


def test_no_inputs_is_an_error(model, inputs, tmp_path):
    x, index = inputs
    with pytest.raises(rcert.RcertError, match="no inputs"):
        rcert.runs.resume.certify_resumable(model, x[:0], index[:0], path=tmp_path / "p.jsonl",
                                            config=_config(), identity=IDENTITY, chunk=CHUNK)


def test_the_settings_digest_ignores_key_order_and_sees_every_value():
    a = {"r": 0.8, "seed": 0, "data": "digits:test"}
    b = {"data": "digits:test", "seed": 0, "r": 0.8}
    assert rcert.runs.resume.run_key(a) == rcert.runs.resume.run_key(b)
    assert rcert.runs.resume.run_key(a) != rcert.runs.resume.run_key({**a, "seed": 1})
    assert rcert.runs.resume.run_key(a) != rcert.runs.resume.run_key({**a, "r": 0.80001})


class _Logits(torch.nn.Module):
    """A model whose decoder returns logits where its data range says [0, 1]."""

    data_range = (0.0, 1.0)

    def __init__(self, model) -> None:
        super().__init__()
        self.inner = model

    def encode(self, x):
        return self.inner.encode(x)

    def decode(self, z):
        return 40 * (self.inner.decode(z) - 0.5)  # far outside [0, 1]


# The decoder-range check would stop the run; allowed, its failure is a recorded warning.
LOGITS_ALLOWED = rcert.RunConfig(allow=("decoder-range",))


def _warned(run) -> list[dict]:
    with rcert.checks.collect(reissue=False) as found:
        run()
    return found


def test_a_resumed_run_reports_the_warnings_of_an_uninterrupted_one(model, inputs, tmp_path,
                                                                    monkeypatch):
    odd = _Logits(model)
    whole = _warned(lambda: _run(odd, inputs, tmp_path / "whole.jsonl", run=LOGITS_ALLOWED))
    assert [w["code"] for w in whole] == ["decoder-range"]
    path = tmp_path / "cut.jsonl"
    with monkeypatch.context() as patch:
        patch.setattr(rcert.runs.resume, "certify", CertifyCalls(fail_on=3))
        with pytest.raises(KeyboardInterrupt):
            _run(odd, inputs, path, run=LOGITS_ALLOWED)
    # Every chunk left is computed now, and the finished ones' warnings come from the file.
    calls = CertifyCalls()
    monkeypatch.setattr(rcert.runs.resume, "certify", calls)
    assert _warned(lambda: _run(odd, inputs, path, run=LOGITS_ALLOWED)) == whole
    assert calls.calls == N_CHUNKS - 2
    calls = CertifyCalls()
    monkeypatch.setattr(rcert.runs.resume, "certify", calls)
    assert _warned(lambda: _run(odd, inputs, path, run=LOGITS_ALLOWED)) == whole  # nothing left
    assert calls.calls == 0
