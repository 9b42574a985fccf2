"""Command-line options derived from the settings dataclasses (:mod:`rcert.settings`).

A field ``n_samples`` becomes ``--n-samples`` (:func:`option_name`): its type, choices and
help text come from the field, and its default is shown from the command's default settings
object. Every option defaults to None, which means "the settings' value", so no default is
written here, and ``margin``, ``attack``, ``curve`` and ``report`` offer the same knobs with
the same help. The TOML of ``rcert check`` takes the same field names
(:mod:`rcert.runs.thresholds`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

import click

from rcert.errors import RcertError
from rcert.settings import (
    ATTACK_PRESETS,
    AttackConfig,
    CertifyConfig,
    RunConfig,
    as_dict,
    default,
    field_type,
    item_type,
    merge,
    option_name,
)
from rcert.source import ModelSource

#: The attack fields a command offers, in help order: all of them.
ATTACK_FIELDS = tuple(f.name for f in dataclasses.fields(AttackConfig))
#: The :class:`ModelSource` fields a command offers besides the path (``--model``).
SOURCE_FIELDS = tuple(f.name for f in dataclasses.fields(ModelSource) if f.name != "path")


def _field(cls: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def _click_type(f: dataclasses.Field) -> Any:
    if "choices" in f.metadata:
        return click.Choice(list(f.metadata["choices"]))
    return field_type(f)


def _shown(value: Any) -> str:
    return str(value) if not isinstance(value, float) else f"{value:g}"


def option_for(cls: type, name: str, default: Any = None, note: str = "", *,
               multiple: bool = False, prefix: str = "") -> Callable:
    """One click option for field ``name`` of settings class ``cls``.

    ``default`` is the value the command uses when the option is not given (shown in the
    help); ``note`` replaces that display, e.g. "the checkpoint's recommended r". Without
    either, the field's own ``[default: ...]`` text stays. A boolean field is a flag;
    ``multiple`` makes the option repeatable (its value a tuple). ``prefix`` names the
    option ``--PREFIX-NAME`` (value ``PREFIX_NAME``), for a second settings class whose
    field names would read ambiguously among a command's options.
    """
    f = _field(cls, name)
    metadata_help, _, own = f.metadata["help"].partition(" [default: ")
    shown = note or (None if default is None else _shown(default)) or own.rstrip(".]") or None
    text = metadata_help + (f" [default: {shown}]" if shown else "")
    kind = item_type(f) if multiple and "choices" not in f.metadata else _click_type(f)
    extra: dict[str, Any] = {"multiple": True} if multiple else {"default": None}
    if kind is bool:
        extra["is_flag"] = True
    # is_flag=False would let click take a repeatable option without a value, and then read
    # a negative number after it as an option of its own.
    dest = f"{prefix}_{name}" if prefix else name
    return click.option(option_name(dest), dest, type=kind, help=text, **extra)


def apply(options: Sequence[Callable], f: Callable) -> Callable:
    """Decorate ``f`` with ``options`` in order (the first is listed first in the help)."""
    for option in reversed(options):
        f = option(f)
    return f


def certify_options(*, with_r: bool = True, names: Sequence[str] | None = None) -> Callable:
    """``--r --m --n-samples --alpha --seed`` from :class:`CertifyConfig`."""
    fields = names or [f.name for f in dataclasses.fields(CertifyConfig)]
    opts = []
    for name in fields:
        if name == "r":
            if with_r:
                opts.append(option_for(CertifyConfig, "r",
                                       note="the checkpoint's recommended r"))
            continue
        opts.append(option_for(CertifyConfig, name, default=default(CertifyConfig, name)))
    return lambda f: apply(opts, f)


def run_config_options() -> Callable:
    """``--device --memory-mb --allow`` from :class:`RunConfig` (progress is ``--quiet``)."""
    opts = [option_for(RunConfig, "device", note="cpu"),
            option_for(RunConfig, "memory_mb", default=default(RunConfig, "memory_mb")),
            option_for(RunConfig, "allow", multiple=True)]
    return lambda f: apply(opts, f)


def source_options() -> Callable:
    """How to read the model file, from :class:`ModelSource`: ``--library --arch --factory
    --factory-arg --sigma --data-range --input-shape --trust-pickles``."""
    opts = [option_for(ModelSource, name, multiple=name == "factory_args")
            for name in SOURCE_FIELDS]
    return lambda f: apply(opts, f)


def given(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The options in ``values`` that set a field of ``cls`` (None: not given)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names and v is not None}


def model_source(path: str, values: dict[str, Any]) -> ModelSource:
    """The :class:`ModelSource` of ``--model PATH`` and the source options in ``values``."""
    fields = given(ModelSource, values)
    fields["factory_args"] = list(fields.get("factory_args", ())) or None
    return build(ModelSource, path=path, **fields)


def attack_options(config: AttackConfig, names: Sequence[str] = ATTACK_FIELDS) -> Callable:
    """The attack's knobs from :class:`AttackConfig`, showing ``config``'s values (the
    command's default attack)."""
    values = as_dict(config)
    opts = []
    for name in names:
        preset = f" (preset {config.preset})" if name in ATTACK_PRESETS[config.preset] else ""
        shown = "" if values[name] is None else f"{values[name]}{preset}"
        opts.append(option_for(AttackConfig, name, note=shown))
    return lambda f: apply(opts, f)


def attack_config(default: AttackConfig, values: dict[str, Any]) -> AttackConfig:
    """``default`` with the attack options the user gave (None: not given) on top."""
    return build(AttackConfig, default, **given(AttackConfig, values))


def build(cls: type, base: Any = None, *, prefix: str = "", **values: Any) -> Any:
    """``settings.merge(cls, base, **values)``, its errors naming the options, not fields
    (``--PREFIX-NAME`` for options made with :func:`option_for`'s ``prefix``)."""
    try:
        return merge(cls, base, **values)
    except RcertError as exc:
        message = str(exc)
        for f in dataclasses.fields(cls):
            dest = f"{prefix}_{f.name}" if prefix else f.name
            message = re.sub(rf"^{f.name}\b", option_name(dest), message)
        raise RcertError(message) from None
