"""Options derived from the settings: the same knobs, defaults and help on every command."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import pytest

from rcert.cli.app import ORDER, cli
from rcert.cli.options import build, option_name
from rcert.errors import RcertError
from rcert.settings import (
    ATTACK_PRESETS,
    DAMAGE_ATTACK,
    EMPIRICAL_ATTACK,
    AttackConfig,
    CertifyConfig,
    RunConfig,
    TrainConfig,
)
from rcert.source import ModelSource


def _options(command: str) -> dict[str, str]:
    """Option name -> help text of one command."""
    return {opt: param.help for param in cli.commands[command].params
            for opt in getattr(param, "opts", []) if opt.startswith("--")}


def _definition(help_text: str) -> str:
    return help_text.split(" [default:")[0]


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(CertifyConfig)])
def test_certificate_options_are_the_same_on_every_command(name):
    option = "--" + name.replace("_", "-")
    texts = {cmd: _definition(_options(cmd)[option]) for cmd in ("margin", "curve", "report")}
    assert len(set(texts.values())) == 1, texts
    field = next(f for f in dataclasses.fields(CertifyConfig) if f.name == name)
    assert set(texts.values()) == {_definition(field.metadata["help"])}


@pytest.mark.parametrize("name", ["threat", "preset", "optimizer", "restarts", "steps",
                                  "n_noise", "n_check"])
def test_attack_options_are_the_same_on_every_command(name):
    option = "--" + name.replace("_", "-")
    texts = {cmd: _definition(_options(cmd)[option]) for cmd in ("margin", "attack", "report")}
    assert len(set(texts.values())) == 1, texts


def _shown_default(command: str, option: str) -> str:
    return re.search(r"\[default: ([^\]]+)\]", _options(command)[option]).group(1)


def test_each_command_shows_its_own_default_attack():
    # margin --empirical runs the fast preset on the mean; attack the standard one on both.
    assert _shown_default("margin", "--threat") == EMPIRICAL_ATTACK.threat.reaches == "mean"
    assert _shown_default("attack", "--threat") == DAMAGE_ATTACK.threat.reaches == "both"
    for command, config in (("margin", EMPIRICAL_ATTACK), ("attack", DAMAGE_ATTACK)):
        for name in ("restarts", "steps", "n_noise"):
            shown = _shown_default(command, "--" + name.replace("_", "-"))
            assert shown.startswith(str(ATTACK_PRESETS[config.preset][name])), (command, name)


def test_explicit_options_override_the_preset():
    from rcert.cli.options import attack_config

    config = attack_config(EMPIRICAL_ATTACK, {"preset": "thorough", "steps": 7})
    assert (config.restarts, config.steps, config.n_noise) == (
        ATTACK_PRESETS["thorough"]["restarts"], 7, ATTACK_PRESETS["thorough"]["n_noise"])
    assert attack_config(EMPIRICAL_ATTACK, {}) == EMPIRICAL_ATTACK
    assert attack_config(EMPIRICAL_ATTACK, {"threat": "both"}).threat.reaches == "both"


def _rcert(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rcert", *argv], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def test_bare_rcert_names_every_command():
    done = _rcert()
    assert done.returncode == 2
    line = done.stderr.strip()
    assert "\n" not in line and line.startswith("rcert: error:")
    for name in ORDER:
        assert name in line
    assert set(ORDER) == set(cli.commands)


def test_top_level_help_lists_every_command_without_cutting_its_summary():
    done = _rcert("--help")
    assert done.returncode == 0
    listed = done.stdout.split("Commands:")[1].strip().splitlines()
    assert [line.split()[0] for line in listed] == list(ORDER)
    assert not any(line.rstrip().endswith("...") for line in listed)


def test_every_option_has_help():
    for name, command in cli.commands.items():
        for param in command.params:
            if getattr(param, "param_type_name", "") == "option":
                assert param.help, f"rcert {name} {param.opts[0]} has no help text"


def test_check_help_names_its_default_config():
    assert "rcert.toml" in _rcert("check", "--help").stdout


def test_rcert_debug_shows_the_cause(tmp_path):
    bad = tmp_path / "nope.rcert"
    quiet = _rcert("margin", "--model", str(bad))
    loud = _rcert("margin", "--model", str(bad), env={"RCERT_DEBUG": "1"})
    assert quiet.returncode == loud.returncode == 2
    assert len(quiet.stderr.strip().splitlines()) == 1 and "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1] == quiet.stderr.strip()


def test_a_threat_is_one_vocabulary():
    from rcert.settings import THREATS

    assert AttackConfig(threat="sigma").threat.reaches == "sigma"
    for command in ("margin", "attack", "curve", "report"):
        param = next(p for p in cli.commands[command].params if p.name == "threat")
        assert tuple(param.type.choices) == THREATS


def test_every_option_of_a_settings_field_is_named_from_it():
    classes = (CertifyConfig, AttackConfig, RunConfig, ModelSource, TrainConfig)
    fields = {f.name for cls in classes for f in dataclasses.fields(cls)}
    named = 0
    for command in cli.commands.values():
        for param in command.params:
            if param.param_type_name == "option" and param.name in fields:
                assert param.opts == [option_name(param.name)], param.opts
                named += 1
    assert named > 50
    assert option_name("n_samples") == "--n-samples"
    assert option_name("factory_args") == "--factory-arg"  # repeatable: one item each


def test_settings_errors_name_the_option():
    with pytest.raises(RcertError, match=r"^--factory-arg\b"):
        build(ModelSource, path="m.pt", factory="pkg:build", factory_args=5)
    with pytest.raises(RcertError, match=r"^--n-samples must be"):
        build(CertifyConfig, r=1.0, n_samples=0)
    with pytest.raises(RcertError, match=r"^--memory-mb must be"):
        build(RunConfig, memory_mb=-1.0)
