"""The report folder's lock (``rcert.runs.report.generate``) with real ``rcert report``
processes: a second run into a folder in use fails at once and names the holder, the
holder's report is untouched by it, and a holder killed with SIGKILL lets go of the lock
and leaves saved work that a rerun resumes to the same bytes as an uninterrupted run."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CertifyCalls, assert_one_error_line, cli_output

import rcert.runs.resume
from rcert.files import LOCK_NAME, locked_folder

MODEL = Path(__file__).resolve().parents[2] / "models" / "vae-digits.safetensors"
# 70 inputs: two chunks of the default 64, so that a run can be killed between them.
ARGS = ["--model", str(MODEL), "--data", "digits:test", "--limit", "70",
        "--n-samples", "100", "--quiet"]
SETTLED = ("inputs.csv", "results.json")

# `rcert` whose certify call number GATE_CALL first creates the file GATE_READY, then waits
# for GATE_OPEN: a run held at a known point, the lock taken and the earlier chunks saved.
GATED = """
import os, sys, time
import rcert.runs.resume as resume
real, calls = resume.certify, []
def gated(*args, **kwargs):
    calls.append(1)
    if len(calls) == int(os.environ["GATE_CALL"]):
        open(os.environ["GATE_READY"], "w").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(os.environ["GATE_OPEN"]) and time.monotonic() < deadline:
            time.sleep(0.02)
    return real(*args, **kwargs)
resume.certify = gated
from rcert.cli.main import main
main(sys.argv[1:])
"""


def _env(**extra: str) -> dict[str, str]:
    # One thread, as in the test process, so that the bytes agree; the session's pinned
    # SOURCE_DATE_EPOCH comes along from os.environ.
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def _report(out: Path, r: str) -> list[str]:
    return ["report", *ARGS, "--r", r, "--out", str(out)]


def _rcert(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rcert.cli", *argv], capture_output=True,
                          text=True, env=_env(), timeout=120)


class Gated:
    """A ``rcert`` process held in its certify call number ``call`` (:data:`GATED`)."""

    def __init__(self, tmp_path: Path, argv: list[str], call: int) -> None:
        self.ready, self.open = tmp_path / "gate-ready", tmp_path / "gate-open"
        self.process = subprocess.Popen(
            [sys.executable, "-c", GATED, *argv], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            env=_env(GATE_CALL=str(call), GATE_READY=str(self.ready),
                     GATE_OPEN=str(self.open)))

    def wait_until(self, condition, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"exited {self.process.returncode}: {self.process.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("the gated run did not get there in time")
            time.sleep(0.02)

    def finish(self) -> tuple[int, str, str]:
        self.open.touch()
        out, err = self.process.communicate(timeout=120)
        return self.process.returncode, out, err

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


@pytest.fixture
def gated(tmp_path):
    """``gated(argv, call)``: start a :class:`Gated` run; stopped after the test."""
    runs: list[Gated] = []

    def start(argv: list[str], call: int) -> Gated:
        runs.append(Gated(tmp_path, argv, call))
        return runs[-1]

    yield start
    for run in runs:
        run.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The r = 0.75 report written into a fresh folder by an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "rep"
    code, _, err = cli_output(*_report(out, "0.75"))
    assert code == 0, err
    return out


def _same_report(out: Path, reference: Path) -> None:
    for name in SETTLED:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def _assert_names_holder(line: str, out: Path, pid: int, command: str) -> None:
    """``line`` is the error of a run refused because ``pid`` holds ``out``."""
    since = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    want = (f"rcert: error: report folder {re.escape(str(out))} is in use by rcert pid {pid} "
            f"on host {re.escape(socket.gethostname())} since {since} "
            f"\\({re.escape(command)}\\); wait for it to finish or use another --out")
    assert re.fullmatch(want, line), line


def test_a_folder_in_use_is_refused_at_once_naming_its_holder(tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    with locked_folder(out, "report folder", command="rcert report --r 0.75"):
        done = _rcert(_report(out, "0.7"))
    line = assert_one_error_line(done.returncode, done.stdout, done.stderr)
    _assert_names_holder(line, out, os.getpid(), "rcert report --r 0.75")
    assert os.listdir(out) == [LOCK_NAME]  # it wrote nothing


def test_two_runs_into_one_folder_the_second_fails_and_the_first_is_right(
        tmp_path, gated, reference):
    out = tmp_path / "rep"
    first = gated(_report(out, "0.75"), call=1)
    first.wait_until(first.ready.exists)  # it holds the lock and is certifying
    started = time.monotonic()
    second = _rcert(_report(out, "0.7"))
    assert time.monotonic() - started < 60  # at once: it never waits for the first
    line = assert_one_error_line(second.returncode, second.stdout, second.stderr)
    _assert_names_holder(line, out, first.process.pid, shlex.join(["rcert",
                                                                   *_report(out, "0.75")]))
    code, stdout, err = first.finish()
    assert code == 0, err
    assert stdout == (out / "summary.md").read_text()
    _same_report(out, reference)


def test_a_killed_run_lets_go_of_the_lock_and_resumes_to_the_same_bytes(
        tmp_path, gated, reference, monkeypatch):
    out = tmp_path / "rep"
    partial = out / ".partial" / "vae-digits.jsonl"
    killed = gated(_report(out, "0.75"), call=2)
    killed.wait_until(lambda: partial.exists() and partial.read_bytes().count(b"\n") >= 1)
    killed.wait_until(killed.ready.exists)
    os.kill(killed.process.pid, signal.SIGKILL)
    assert killed.process.wait(timeout=30) == -signal.SIGKILL
    saved = partial.read_bytes()
    assert saved.count(b"\n") == 1 and not (out / "results.json").exists()

    calls = CertifyCalls()
    monkeypatch.setattr(rcert.runs.resume, "certify", calls)
    code, _, err = cli_output(*_report(out, "0.75"))  # the lock is free again
    assert code == 0, err
    assert calls.calls == 1  # only the chunk the kill lost
    assert partial.read_bytes().startswith(saved)
    _same_report(out, reference)


def test_a_report_file_that_cannot_be_written_is_refused_before_the_work(tmp_path,
                                                                         monkeypatch):
    from rcert.errors import RcertError
    from rcert.runs import report

    out = tmp_path / "rep"
    out.mkdir()
    (out / "summary.md").symlink_to("/dev/null")
    monkeypatch.setattr(report, "compute", lambda *a, **k: pytest.fail("the work started"))
    with pytest.raises(RcertError, match=r"cannot write .*summary\.md: it is a character "
                                         r"device \(through a symlink\)"):
        report.generate([], out)
    assert (out / "summary.md").is_symlink()
