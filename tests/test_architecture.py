"""The layout's rules (docs/architecture.md): one-way imports, module and function sizes,
and a command line that starts without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "rcert"

#: Layer of each top-level module or subpackage of rcert; a module may import only from
#: its own layer or a lower one.
LAYERS = {
    "errors": 0, "settings": 0, "checks": 0, "validate": 0, "files": 0, "progress": 0,
    "source": 0, "reading": 0, "values": 0,
    "models": 1, "data": 2, "statistics": 3, "engine": 4, "attacks": 5, "evaluation": 6,
    "api": 7, "results": 8, "plots": 9, "runs": 10, "cli": 11,
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_CODE_LINES = 60


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if p.name not in ("__main__.py",))


def _unit(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def _imports(path: Path) -> list[str]:
    """The rcert units a module imports, at module level or inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "rcert":
                if len(parts) > 1:
                    found.append(parts[1])
                else:
                    found += [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "rcert" and len(parts) > 1:
                    found.append(parts[1])
    return found


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in _modules()} - {"__init__"}
    assert units == set(LAYERS), "add the new module to LAYERS and to docs/architecture.md"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_one_way(path):
    unit = _unit(path)
    if unit == "__init__":
        return  # the package's lazy public API may name any layer
    upward = [name for name in _imports(path)
              if name in LAYERS and LAYERS[name] > LAYERS[unit]]
    assert not upward, f"{path.name} (layer {LAYERS[unit]}) imports higher layers {upward}"


def _code_lines(function: ast.FunctionDef) -> int:
    lines = function.end_lineno - function.lineno + 1
    first = function.body[0]
    if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant):
        lines -= first.end_lineno - first.lineno + 1  # the docstring
    return lines


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_small(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path.name} grew past the limit"
    long = [(f.name, _code_lines(f)) for f in ast.walk(ast.parse(text))
            if isinstance(f, ast.FunctionDef) and _code_lines(f) > MAX_FUNCTION_CODE_LINES]
    assert not long, f"functions over {MAX_FUNCTION_CODE_LINES} code lines: {long}"


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["margin", "--help"]])
def test_the_command_starts_without_heavy_imports(argv):
    code = ("import sys\nfrom rcert.cli.main import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('torch', 'scipy', 'sklearn', 'seaborn', 'matplotlib',"
            " 'pandas') if m in sys.modules)\nprint('HEAVY', heavy, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                          text=True, check=True)
    assert "HEAVY []" in done.stderr, done.stderr[-500:]
