"""``rcert convert SRC DST``: a legacy checkpoint becomes a safetensors one with the same
tensors, metadata and outputs; bad input is one error line, exit 2, and nothing written."""

from __future__ import annotations

import pytest
import safetensors.torch
import torch
from conftest import assert_one_error_line, legacy_header, write_legacy

import rcert
from rcert.models import checkpoint

META = {"data": "digits:train", "metrics": {"best_val_elbo": -20.0}, "recommended_r": 0.8,
        "extra": {"note": "before safetensors"}}


def _model():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return rcert.build_model("mlp", input_shape=(1, 8, 8), latent_dim=4, hidden=(16,))


@pytest.fixture
def legacy(tmp_path):
    path = tmp_path / "old.rcert"
    model = _model()
    write_legacy(path, model.state_dict(), legacy_header(model, META))
    return path


def test_convert_writes_an_equivalent_safetensors_checkpoint(run, tmp_path, legacy):
    dst = tmp_path / "new.safetensors"
    code, out, err = run("convert", legacy, dst)
    assert (code, out, err) == (0, "", f"rcert: converted {legacy} -> {dst}\n")
    expected = _model().state_dict()
    tensors = safetensors.torch.load_file(dst)
    assert tensors.keys() == expected.keys()
    assert all(torch.equal(tensors[k], expected[k]) for k in expected)
    new, old = checkpoint.read_header(dst), checkpoint.read_header(legacy)
    assert {k: new[k] for k in (*META, "model", "rcert_version")} == {
        k: old[k] for k in (*META, "model", "rcert_version")}
    assert new["format_version"] == 2
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    model = checkpoint.load(dst)
    for a, b in zip(model.encode(x), _model().encode(x), strict=True):
        assert torch.equal(a, b)
    assert model.meta == new


def _folder(tmp_path):
    return sorted(p.name for p in tmp_path.rglob("*"))


@pytest.mark.parametrize(
    "make_src,dst,needle",
    [
        (lambda d: d / "missing.rcert", "out.safetensors", "does not exist"),
        (lambda d: d / "old.rcert", "old.rcert", "onto itself"),
        (lambda d: d / "old.rcert", "no/such/out.safetensors", "does not exist"),
        (lambda d: d / "old.rcert", "a_folder", "it is a folder"),
        (lambda d: d / "garbage.rcert", "out.safetensors", "not an rcert checkpoint"),
        (lambda d: d / "weights.pt", "out.safetensors", "is a torch.save file"),
        (lambda d: d / "plain.safetensors", "out.safetensors", "without rcert metadata"),
    ],
    ids=["missing", "onto-itself", "no-folder", "dst-folder", "garbage", "torch-save", "plain"],
)
def test_bad_input_is_one_line_and_writes_nothing(run, tmp_path, legacy, make_src, dst, needle):
    (tmp_path / "garbage.rcert").write_bytes(bytes(range(256)))
    torch.save(_model().state_dict(), tmp_path / "weights.pt")
    safetensors.torch.save_file(_model().state_dict(), tmp_path / "plain.safetensors")
    (tmp_path / "a_folder").mkdir()
    before, old = _folder(tmp_path), legacy.read_bytes()
    code, out, err = run("convert", make_src(tmp_path), tmp_path / dst)
    assert needle in assert_one_error_line(code, out, err)
    assert _folder(tmp_path) == before
    assert legacy.read_bytes() == old


def test_convert_is_listed_last_in_help(run):
    code, out, _ = run("--help")
    assert code == 0
    commands = [line.split()[0] for line in out.split("Commands:")[1].splitlines() if line]
    assert commands[-1] == "convert"


def test_dash_writes_the_checkpoint_to_stdout(tmp_path, legacy, capsysbinary, monkeypatch):
    from rcert import cli

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(["convert", str(legacy), "-"])
    out, err = capsysbinary.readouterr()
    assert info.value.code == 0, err
    tensors = safetensors.torch.load(out)
    assert set(tensors) == set(rcert.load(legacy).state_dict())
    assert not (tmp_path / "-").exists()
