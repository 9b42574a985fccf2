import json
import os

import pytest

from rcert.errors import RcertError
from rcert.models.architectures import build_model
from rcert.models.description import build_from_description, read_description

HPARAMS = {"arch": "mlp", "input_shape": [1, 2, 2], "latent_dim": 2, "hidden": [3],
           "activation": "tanh", "likelihood": "gaussian"}
TOML = """# an rcert MLP
arch = "mlp"
input_shape = [1, 2, 2]
latent_dim = 2
hidden = [3]
activation = "tanh"
likelihood = "gaussian"
"""


def test_a_json_description_of_a_config_rebuilds_the_architecture(tmp_path):
    config = build_model(**HPARAMS).config()  # with tau/fixed_sigma null, as saved
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(config))
    assert read_description(path) == config
    assert build_from_description(path).config() == config


@pytest.mark.parametrize("name", ["arch.toml", "arch.txt", "arch"])
def test_toml_descriptions_by_suffix_or_content(tmp_path, name):
    path = tmp_path / name
    path.write_text(TOML)
    assert read_description(path) == HPARAMS
    assert build_from_description(path).config() == build_model(**HPARAMS).config()


def test_a_suffixless_json_file_is_read_as_json(tmp_path):
    path = tmp_path / "arch"
    path.write_text(json.dumps(HPARAMS))
    assert read_description(path) == HPARAMS


@pytest.mark.parametrize("make,match", [
    (lambda p: p, "does not exist; check the path given to --arch"),
    (lambda p: p.mkdir() or p, "is a folder, not a regular file"),
    (lambda p: os.mkfifo(p) or p, r"is a named pipe \(FIFO\), not a regular file"),
    (lambda p: p.write_bytes(b"\xff\xfe{") and p, "not UTF-8"),
    (lambda p: p.write_text('{"arch": "mlp",') and p, r"not valid JSON \(.*\); write"),
    (lambda p: p.write_text("[" * 100_000) and p, "nests arrays or objects more than"),
    (lambda p: p.write_text("[1, 2]") and p, "a JSON list, not an object"),
    (lambda p: p.write_text('"mlp"') and p, "a JSON str, not an object"),
    (lambda p: p.write_text('{"latent_dim": 2}') and p, "names no architecture; add arch"),
])
def test_bad_files_are_refused_on_one_line(tmp_path, make, match):
    path = make(tmp_path / "arch.json")
    with pytest.raises(RcertError, match=match) as err:
        build_from_description(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null"])
def test_a_device_is_refused_by_its_type(path):
    with pytest.raises(RcertError, match=f"architecture description {path} is a character "
                                         "device, not a regular file"):
        build_from_description(path)


def test_a_description_over_the_document_limit_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(HPARAMS) + " " * 2**20)
    monkeypatch.setenv("RCERT_MAX_DOCUMENT_MB", "1")
    with pytest.raises(RcertError, match=r"more than the 1 MB .*RCERT_MAX_DOCUMENT_MB"):
        build_from_description(path)


def test_a_file_that_is_neither_json_nor_toml(tmp_path):
    path = tmp_path / "arch.cfg"
    path.write_text("arch: mlp\n")
    with pytest.raises(RcertError, match="not valid JSON or TOML"):
        read_description(path)


@pytest.mark.parametrize("change,match", [
    ({"latent_size": 2}, r"unknown \['latent_size'\]; valid ones are \['input_shape'"),
    ({"arch": "transformer"}, "unknown architecture 'transformer'; choose one of: mlp, conv"),
    ({"latent_dim": 0}, "latent_dim"),
    ({"hidden": "wide"}, "hidden"),
    ({"hidden": [100_000, 100_000]}, "parameters .*choose smaller layers"),
])
def test_bad_hyper_parameters_are_named(tmp_path, change, match):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({**HPARAMS, **change}))
    with pytest.raises(RcertError, match=match) as err:
        build_from_description(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_a_missing_hyper_parameter_is_named(tmp_path):
    path = tmp_path / "arch.toml"
    path.write_text('arch = "conv"\ninput_shape = [1, 4, 4]\n')
    with pytest.raises(RcertError, match=r"missing \['latent_dim'\]"):
        build_from_description(path)
