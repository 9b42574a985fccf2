import sys
from pathlib import Path

import pytest
from torch import nn

from rcert.errors import RcertError
from rcert.models.factory import call_factory
from rcert.source import ModelSource

MODELS = """
from torch import nn

NOT_A_FUNCTION = 3


def build_vae(latent_dim, hidden=3):
    return nn.Sequential(nn.Linear(4, hidden), nn.Linear(hidden, latent_dim))


def build_nothing():
    return "a string"


def build_broken(latent_dim):
    raise ValueError("latent_dim too large\\nsecond line")
"""


@pytest.fixture
def project(make_project) -> Path:
    """The working directory, a project folder whose ``mypkg/models.py`` is :data:`MODELS`."""
    return make_project(MODELS)


def test_the_factory_is_imported_from_the_working_directory_and_called(project):
    path_before = list(sys.path)
    model = call_factory("mypkg.models:build_vae", {"latent_dim": 2, "hidden": 5})
    assert isinstance(model, nn.Sequential)
    assert [tuple(p.shape) for p in model.parameters()] == [(5, 4), (5,), (2, 5), (2,)]
    assert sys.path == path_before


def _error(spec: str, kwargs: dict | None = None) -> str:
    with pytest.raises(RcertError) as err:
        call_factory(spec, kwargs or {})
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_missing_module_names_it_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the project folder
    message = _error("nopkg_for_rcert_tests.models:build_vae")
    assert "no module named 'nopkg_for_rcert_tests'" in message
    assert "run rcert from the project folder that contains nopkg_for_rcert_tests" in message
    assert "pip install -e ." in message


def test_a_missing_dependency_of_the_module_is_not_blamed_on_the_folder(project):
    (project / "mypkg" / "needs.py").write_text("import not_installed_for_rcert_tests\n")
    message = _error("mypkg.needs:build")
    assert "importing mypkg.needs for --factory failed: ModuleNotFoundError" in message
    assert "install what it needs" in message


def test_a_module_that_fails_to_import_is_reported(project):
    (project / "mypkg" / "broken.py").write_text("def build(:\n")
    assert "importing mypkg.broken for --factory failed: SyntaxError" in _error(
        "mypkg.broken:build")


@pytest.mark.parametrize("spec,kwargs,expected", [
    ("mypkg.models:build_gan", {}, "mypkg.models has no attribute 'build_gan'; check the name"),
    ("mypkg.models:NOT_A_FUNCTION", {}, "mypkg.models:NOT_A_FUNCTION is an int, not a function"),
    ("mypkg.models:build_vae", {"latent_dim": 2, "depth": 3},
     "factory mypkg.models:build_vae(latent_dim=2, depth=3) failed: TypeError: "),
    ("mypkg.models:build_broken", {"latent_dim": 9},
     "factory mypkg.models:build_broken(latent_dim=9) failed: ValueError: latent_dim too large;"
     " fix the factory or its arguments (--factory-arg KEY=VALUE)"),
    ("mypkg.models:build_nothing", {},
     "factory mypkg.models:build_nothing returned a str, not a torch.nn.Module"),
])
def test_factory_errors_are_one_line_with_the_fix(project, spec, kwargs, expected):
    assert expected in _error(spec, kwargs)


@pytest.mark.parametrize("spec", ["mypkg.models", "mypkg.models:", ":build", "my-pkg:build",
                                  "mypkg:build.x"])
def test_malformed_specs_are_refused(spec):
    assert "factory must be module:function" in _error(spec)


def test_factory_arguments_nested_too_deep_are_one_line():
    with pytest.raises(RcertError, match=r"^factory argument hidden nests too deep to read"):
        ModelSource("w.pt", factory="mypkg.models:build_vae",
                    factory_args=["hidden=" + "[" * 100_000])
    # Text that is no JSON, an over-long integer included, stays text.
    long = "1" * 5000
    assert ModelSource("w.pt", factory="mypkg.models:build_vae",
                       factory_args=[f"n={long}"]).factory_args == {"n": long}
