"""Values a checkpoint records, read back by rcert.runs.loading: a damaged one is named as the
checkpoint's, on one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
from conftest import assert_one_error_line
from torch import nn

from rcert.errors import RcertError
from rcert.models import checkpoint
from rcert.models.architectures import build_model
from rcert.runs import loading


def _with_header(tmp_path: Path, **fields: str) -> Path:
    """A valid checkpoint whose header fields are replaced by the given JSON texts."""
    path = tmp_path / "m.safetensors"
    checkpoint.save(build_model("mlp", input_shape=[1, 8, 8], latent_dim=2, hidden=[4]), path,
                    data="digits:train", recommended_r=0.5)
    header = checkpoint.read_header(path)
    text = json.dumps({**header, **{key: f"@{key}@" for key in fields}})
    for key, value in fields.items():
        text = text.replace(f'"@{key}@"', value)
    # The digest covers the tensors only, so the edited header still passes its check.
    safetensors.torch.save_file(safetensors.torch.load_file(path), path,
                                metadata={"rcert": text})
    return path


@pytest.mark.parametrize(("value", "shown"), [("-0.5", "-0.5"), ("0", "0"), ("1e999", "inf")])
def test_a_damaged_recommended_r_is_named_as_the_checkpoints(tmp_path, run, value, shown):
    path = _with_header(tmp_path, recommended_r=value)
    line = assert_one_error_line(*run("margin", "--model", path, "--limit", "2", "--quiet"))
    assert line == (f"rcert: error: the checkpoint {path} recommends r = {shown}, which is not a "
                    "positive finite number; pass one (--r, or r in the config)")


@pytest.mark.parametrize("value", [float("nan"), "0.5", True, -1.0])
def test_radius_refuses_whatever_a_foreign_meta_records(value):
    model = nn.Linear(1, 1)
    model.meta = {"recommended_r": value}
    with pytest.raises(RcertError, match=r"^the checkpoint m\.pt recommends r = .*, which is "
                                         r"not a positive finite number; pass one \(--r"):
        loading.radius(model, None, "m.pt")
    assert loading.radius(model, 0.25, "m.pt") == 0.25  # an r given is the user's to check


def test_a_damaged_training_data_spec_is_named_as_the_checkpoints(tmp_path, run):
    path = _with_header(tmp_path, data='"nosuchdata:test"')
    with pytest.raises(RcertError, match=rf"^the checkpoint {path} records training data "
                                         r"'nosuchdata:test', which is not a data spec rcert "
                                         r"reads \(.*\); pass --data$"):
        loading.load_with_data(str(path))
    line = assert_one_error_line(*run("margin", "--model", path, "--r", "0.5", "--quiet"))
    assert "records training data 'nosuchdata:test'" in line
