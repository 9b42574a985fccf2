"""Where the commands write (``rcert.cli.common``): ``-`` is stdout for every output that is
one stream (``--output``, ``rcert plot --out``), refused where an option names a folder or
a pair of files; a device or named pipe is refused before any work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_one_error_line

from rcert import cli

MODEL = Path(__file__).resolve().parents[2] / "models" / "vae-digits.safetensors"


def _margin(*extra) -> list[str]:
    return ["margin", "--model", str(MODEL), "--limit", "3", "--n-samples", "20", "--quiet",
            *extra]


def _binary(capsysbinary, *argv) -> tuple[int, bytes, bytes]:
    """``rcert ARGS...`` in-process, its stdout and stderr as bytes."""
    with pytest.raises(SystemExit) as info:
        cli.main([str(a) for a in argv])
    captured = capsysbinary.readouterr()
    return info.value.code, captured.out, captured.err


def test_output_dash_is_stdout(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, plain, err = run(*_margin("--format", "csv"))
    assert code == 0, err
    code, dashed, err = run(*_margin("--format", "csv", "--output", "-"))
    assert code == 0, err
    assert dashed == plain and plain.startswith("index,")
    assert os.listdir(tmp_path) == []  # no file named "-"


def test_output_onto_a_device_is_refused_before_any_work(run, tmp_path):
    link = tmp_path / "out.csv"
    link.symlink_to("/dev/null")
    line = assert_one_error_line(*run(*_margin("--output", link)))
    assert line == (f"rcert: error: cannot write {link}: it is a character device (through "
                    f"a symlink); use --output - for stdout")
    assert os.readlink(link) == "/dev/null"


def test_dev_stdout_redirected_to_a_file_is_refused_not_replaced(tmp_path):
    # A link of our own made like /dev/stdout (-> /proc/self/fd/1): were the check to
    # regress, a run as root would replace the system's /dev/stdout, not this link.
    stdout_link = tmp_path / "stdout"
    stdout_link.symlink_to("/proc/self/fd/1")
    log = tmp_path / "log.txt"
    log.write_text("earlier lines\n")
    with open(log, "a") as handle:
        done = subprocess.run([sys.executable, "-m", "rcert.cli", *_margin(
            "--output", stdout_link)], stdout=handle, stderr=subprocess.PIPE, text=True,
            timeout=120)
    line = assert_one_error_line(done.returncode, "", done.stderr)
    assert line == (f"rcert: error: cannot write {stdout_link}: it is the file this "
                    f"process's stdout or stderr goes to (through a symlink); use --output - "
                    f"for stdout")
    assert log.read_text() == "earlier lines\n"  # neither replaced nor appended to
    assert sorted(os.listdir(tmp_path)) == ["log.txt", "stdout"]
    assert stdout_link.is_symlink()


def test_plot_out_dash_writes_png_to_stdout_but_not_to_a_terminal(tmp_path, capsysbinary,
                                                                  monkeypatch):
    saved = tmp_path / "m.json"
    code, _, err = _binary(capsysbinary, *_margin("--format", "json", "--output", saved))
    assert code == 0, err
    code, png, err = _binary(capsysbinary, "plot", "margins", saved, "--out", "-")
    assert code == 0, err
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    code, _, err = _binary(capsysbinary, "plot", "margins", saved, "--out", tmp_path / "m.png")
    assert code == 0 and (tmp_path / "m.png").read_bytes() == png  # the same figure

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = _binary(capsysbinary, "plot", "margins", saved, "--out", "-")
    line = assert_one_error_line(code, out.decode(), err.decode())
    assert "refusing to write binary data to the terminal" in line


@pytest.mark.parametrize(("argv", "words"), [
    (["train", "--data", "digits:train", "--out", "-", "--quiet"],
     "cannot write the checkpoint to - (stdout)"),
    (["report", "--model", str(MODEL), "--out", "-", "--quiet"], "a report is a folder"),
    (["check", "rcert.toml", "--out", "-"], "a report is a folder"),
])
def test_dash_is_refused_where_an_output_is_not_one_stream(run, tmp_path, monkeypatch, argv,
                                                           words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rcert.toml").write_text(f'[[model]]\npath = "{MODEL}"\nlimit = 3\n')
    line = assert_one_error_line(*run(*argv))
    assert words in line, line
    assert sorted(os.listdir(tmp_path)) == ["rcert.toml"]  # nothing named "-"
