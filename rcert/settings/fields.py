"""The machinery every settings dataclass shares: field metadata, option names, the JSON
form of a settings object, and :func:`merge`, which puts keyword shortcuts on top."""

from __future__ import annotations

import dataclasses
from typing import Any

from rcert.errors import RcertError

#: Fields whose command-line option is not their name with dashes.
_RENAMED_OPTIONS = {"factory_args": "factory-arg"}


def option_name(name: str) -> str:
    """The command-line option of settings field ``name``: ``--n-samples`` for
    ``n_samples``; what the CLI offers and what messages that name an option say."""
    return "--" + _RENAMED_OPTIONS.get(name, name.replace("_", "-"))


def field_help(text: str, **extra: Any) -> dict[str, Any]:
    """A settings field's metadata: its help text (the CLI option's, the docs'), and extras
    such as ``choices``."""
    return {"help": text, **extra}


def set_field(obj: Any, name: str, value: Any) -> None:
    """Set ``name`` on a frozen settings object while ``__post_init__`` normalises it."""
    object.__setattr__(obj, name, value)


def as_dict(config: Any) -> dict[str, Any]:
    """A settings object as plain JSON values (a threat model as its word), fields in order."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        # A nested settings object (a threat model) is written as its word.
        out[f.name] = (str(value) if dataclasses.is_dataclass(value)
                       else list(value) if isinstance(value, tuple) else value)
    return out


def field_type(f: dataclasses.Field) -> type:
    """The plain type of a settings field (``int | None`` gives int): what a CLI option or a
    TOML key of that name takes."""
    return {"float": float, "int": int, "str": str, "bool": bool}.get(
        str(f.type).split("|")[0].strip(), str)


def item_type(f: dataclasses.Field) -> type:
    """The type of one item of a ``tuple[X, ...]`` field (a repeatable CLI option)."""
    text = str(f.type).split("|")[0].strip()
    if text.startswith("tuple[") and text.endswith(", ...]"):
        text = text.removeprefix("tuple[").removesuffix(", ...]")
    return {"float": float, "int": int, "str": str}.get(text, str)


def default(cls: type, name: str) -> Any:
    """The default of one field of a settings class (``dataclasses.MISSING`` if none)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def merge(cls: type, base: Any = None, **overrides: Any) -> Any:
    """A ``cls`` settings object: ``base`` (default: ``cls``'s defaults) with the keyword
    shortcuts that are not None put on top.

    This is how the Python API offers ``certify(model, x, r=0.5)`` next to
    ``certify(model, x, CertifyConfig(r=0.5))`` without writing a default twice: every
    shortcut defaults to None, which means "the settings' value".
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise RcertError(f"unknown {cls.__name__} setting {unknown[0]!r}; known: "
                         f"{', '.join(sorted(names))}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if base is None:
        return cls(**given)
    if not isinstance(base, cls):
        raise RcertError(f"expected a {cls.__name__}, got {type(base).__name__}")
    rebase = getattr(cls, "rebase", None)
    if rebase is not None:
        # A class whose fields depend on each other (a preset) merges them itself.
        return rebase(base, given)
    return dataclasses.replace(base, **given)
