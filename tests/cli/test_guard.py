"""The global guard: a bug is one line and exit 70 with its traceback logged; running out
of memory is one line and exit 2; a closed stdout pipe ends quietly."""

import subprocess
import sys
from pathlib import Path

import pytest

from rcert.cli import guard
from rcert.runs import inspection

MODEL = Path(__file__).resolve().parents[2] / "models" / "vae-digits.safetensors"


def _raise(exc: BaseException):
    def broken(*args, **kwargs):
        raise exc

    return broken


@pytest.fixture
def logs(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "logs"
    monkeypatch.setenv("RCERT_LOG_DIR", str(folder))
    monkeypatch.delenv("RCERT_DEBUG", raising=False)
    return folder


def test_a_bug_is_one_line_exit_70_and_a_log(run, logs, monkeypatch):
    monkeypatch.setattr(inspection, "inspect_model", _raise(ZeroDivisionError("division by zero")))
    code, out, err = run("inspect", MODEL)
    assert code == guard.INTERNAL == 70
    assert out == "" and "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith("rcert: internal error: ZeroDivisionError: division by zero (at "
                           "rcert/")
    assert "this is a bug in rcert" in line
    (log,) = logs.iterdir()
    assert str(log) in line
    text = log.read_text()
    assert "Traceback" in text and "ZeroDivisionError" in text
    assert f"command: rcert inspect {MODEL}" in text


def test_rcert_debug_prints_the_traceback_instead_of_logging(run, logs, monkeypatch):
    monkeypatch.setenv("RCERT_DEBUG", "1")
    monkeypatch.setattr(inspection, "inspect_model", _raise(KeyError("k")))
    code, _, err = run("inspect", MODEL)
    assert code == 70
    assert "Traceback" in err and err.splitlines()[-1].startswith("rcert: internal error: ")
    assert "RCERT_DEBUG=1" in err.splitlines()[-1] and not logs.exists()


def test_an_unwritable_log_folder_falls_back_to_the_temporary_folder(run, tmp_path,
                                                                      monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("RCERT_LOG_DIR", str(blocker / "logs"))  # cannot be made
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setattr(inspection, "inspect_model", _raise(AssertionError()))
    code, _, err = run("inspect", MODEL)
    assert code == 70 and "AssertionError" in err
    (log,) = tmp_path.glob("rcert-crash-*.log")
    assert str(log) in err


@pytest.mark.parametrize("exc", [MemoryError(), RuntimeError(
    "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 8000000000000 bytes.")], ids=["MemoryError", "torch-allocator"])
def test_running_out_of_memory_is_one_line_that_suggests_smaller_settings(run, logs,
                                                                          monkeypatch, exc):
    monkeypatch.setattr(inspection, "inspect_model", _raise(exc))
    code, out, err = run("inspect", MODEL)
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("rcert: error: out of memory") and "--memory-mb" in line
    assert "--limit" in line and not logs.exists()


def test_a_closed_stdout_pipe_ends_quietly():
    # `rcert ... | head -c 1`: the reader goes away before the table is written.
    code = ("import sys\nfrom rcert.cli.main import main\nfrom rcert.runs import inspection\n"
            "def broken(*a, **k):\n    raise BrokenPipeError(32, 'Broken pipe')\n"
            "inspection.inspect_model = broken\nmain(sys.argv[1:])")
    done = subprocess.run([sys.executable, "-c", code, "inspect", str(MODEL)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 141 and done.stderr == ""


def test_control_characters_in_a_message_stay_on_one_line(run, tmp_path):
    code, out, err = run("margin", "--model", tmp_path / "a\nb\x1b[31m.safetensors")
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("rcert: error: model ") and "a\\nb\\x1b[31m.safetensors" in line
