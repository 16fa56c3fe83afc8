"""The field machinery of the config dataclasses: declaring fields, coercing and validating values,
dotted paths, flat names and CLI flags.

Generic over nested dataclasses: a field declared with :func:`section` holds a nested dataclass,
every other one is a leaf. The functions of the whole field table take its ``root`` class
(``RocketConfig``): ``flag_table(RocketConfig)``.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any

from rocket_ctr.errors import FieldError

_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
               "tuple": "comma-separated integer widths", "int | None": "an integer or null",
               "float | None": "a number or auto"}


def option(default, *, help: str = "", choices: tuple | None = None, minimum=None, above=None, below=None,
           maximum=None, flag: str | None = None):
    """A config field with what the CLI and validation need: ``help``, allowed ``choices``, bounds
    (``minimum``/``maximum`` inclusive, ``above``/``below`` exclusive) and a ``flag`` other than the
    generated one."""
    return dataclasses.field(default=default, metadata=dict(help=help, choices=choices, minimum=minimum,
                                                            above=above, below=below, maximum=maximum, flag=flag))


def section(factory):
    """A nested config field: ``factory()`` (a dataclass, or a function returning one) makes it fresh
    for every config."""
    return dataclasses.field(default_factory=factory, metadata={"section": True})


# ----- the tree of fields --------------------------------------------------------------------------
def leaves(config, prefix: str = ""):
    """(dotted path, the dataclass holding it, its Field) of every leaf field, in declaration order."""
    for field in dataclasses.fields(config):
        path = f"{prefix}{field.name}"
        if field.metadata.get("section"):
            yield from leaves(getattr(config, field.name), path + ".")
        else:
            yield path, config, field


def _section_names(config) -> set:
    """Names of the nested sections (model, hint, training, attention, light, booster)."""
    names = set()
    for field in dataclasses.fields(config):
        if field.metadata.get("section"):
            names |= {field.name, *_section_names(getattr(config, field.name))}
    return names


def set_flat(config, flat: dict) -> None:
    """Sets leaf fields of ``config`` by their flat names (FieldError: an unknown name)."""
    by_name = flat_names(type(config)) if flat else {}
    unknown = sorted(set(flat) - set(by_name))
    if unknown:
        raise FieldError(unknown_keys(unknown, by_name))
    for name, value in flat.items():
        *parents, leaf = by_name[name].split(".")
        holder = config
        for part in parents:
            holder = getattr(holder, part)
        setattr(holder, leaf, value)


def overridden(config, *overrides: dict) -> dict:
    """``{dotted.path: value}`` of ``config`` with the overrides applied, each nested, dotted or flat
    names; ``None`` values are ignored. Raises FieldError naming unknown keys."""
    root = type(config)
    values = {path: getattr(holder, field.name) for path, holder, field in leaves(config)}
    by_name, unknown = flat_names(root), []
    for key, value in [item for mapping in overrides for item in dotted(mapping, root).items()]:
        path = key if key in values else by_name.get(key)
        if path is None:
            unknown.append(key)
        elif value is not None:
            values[path] = value
    if unknown:
        raise FieldError(unknown_keys(sorted(unknown), [*values, *by_name]))
    return values


def unknown_keys(unknown: list[str], known) -> str:
    """The message for config keys that name no field: each with its likeliest intended name."""
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
        parts.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    return (f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(parts)}; "
            "`rocket-ctr train --help` lists every field (its flag is the key with - for _)")


def from_paths(cls, values: dict[str, Any]):
    """``cls`` (a dataclass of sections) from ``{dotted.path: value}``: each section built from its
    paths, missing ones keeping their defaults."""
    sections: dict = {}
    for path, value in values.items():
        *parents, name = path.split(".")
        node = sections
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = value
    return cls(**{f.name: _build(_section_type(f), sections.get(f.name, {})) for f in dataclasses.fields(cls)})


def _section_type(field: dataclasses.Field) -> type:
    return type(field.default_factory())


def _build(cls, values: dict):
    """A section dataclass ``cls`` from a nested mapping (its nested sections of their declared types)."""
    if not isinstance(values, dict):
        raise FieldError(f"config section of type {cls.__name__} must be a mapping, got {values!r}")
    kwargs, fields = {}, {f.name: f for f in dataclasses.fields(cls)}
    for name, value in values.items():
        field = fields[name]
        kwargs[name] = _build(_section_type(field), value) if field.metadata.get("section") else value
    return cls(**kwargs)


def plain(value):
    """A dataclass as nested plain dicts (tuples as lists)."""
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return list(value) if isinstance(value, tuple) else value


def dotted(mapping: dict, root) -> dict:
    """Nested dicts of ``root``'s sections -> ``{dotted.path: value}``; keys already dotted or flat
    stay as they are."""
    return _dotted(mapping, _section_names(root()), "")


def _dotted(mapping: dict, sections: set, prefix: str) -> dict:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and key in sections:
            out.update(_dotted(value, sections, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ----- flags and flat names -----------------------------------------------------------------------
def flag_of(path: str, field: dataclasses.Field) -> str:
    """The CLI flag of a field: its declared ``flag``, else its path without the ``model.`` and
    ``training.`` sections, dashed (``hint.weight`` → ``--hint-weight``, ``model.light.units`` →
    ``--light-units``, ``training.epochs`` → ``--epochs``)."""
    if field.metadata.get("flag"):
        return field.metadata["flag"]
    parts = path.split(".")
    if parts[0] in ("model", "training"):
        parts = parts[1:]
    return "--" + "-".join(parts).replace("_", "-")


def flag_table(root) -> dict[str, str]:
    """``{dotted.path: --flag}`` of every leaf field of ``root`` (``RocketConfig``)."""
    return {path: flag_of(path, field) for path, _, field in leaves(root())}


def flat_names(root) -> dict[str, str]:
    """``{flat_name: dotted.path}`` of ``root``: the flag without dashes, the keys of a flat config file."""
    return {flag[2:].replace("-", "_"): path for path, flag in flag_table(root).items()}


def fields_with_metadata(root):
    """(dotted path, flag, Field, default) of every leaf field of ``root``, for building CLI flags."""
    for path, holder, field in leaves(root()):
        yield path, flag_of(path, field), field, getattr(holder, field.name)


# ----- values -------------------------------------------------------------------------------------
def validate(config) -> None:
    """Coerces every leaf of ``config`` to its field's type in place, then checks choices and bounds.

    Raises:
        FieldError: every problem found, each naming its field (``{hint.weight}``).
    """
    problems = []
    for path, holder, field in leaves(config):
        value = getattr(holder, field.name)
        try:
            setattr(holder, field.name, _coerce(field.type, value))
        except (TypeError, ValueError):
            problems.append(f"{{{path}}} must be {_TYPE_WORDS.get(field.type, field.type)}, got {value!r}")
    if not problems:
        problems = [p for path, holder, field in leaves(config) if (p := _check(path, holder, field))]
    if problems:
        raise FieldError("invalid config: " + "; ".join(problems))


def _check(path: str, holder, field) -> str | None:
    """One problem with a coerced value (choices, bounds), as a message with the field placeholder."""
    value, meta = getattr(holder, field.name), field.metadata
    if value is None:
        return None
    if meta.get("choices") and value not in meta["choices"]:
        *first, last = meta["choices"]
        return f"{{{path}}} must be {', '.join(first)} or {last}, got {value!r}"
    if isinstance(value, tuple) and not value:
        return f"{{{path}}} must list at least one width"
    values = value if isinstance(value, tuple) else (value,)
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        return f"{{{path}}} must be a finite number, got {value}"
    if meta.get("minimum") is not None and min(values) < meta["minimum"]:
        return f"{{{path}}} must be >= {meta['minimum']}, got {value}"
    if meta.get("above") is not None and min(values) <= meta["above"]:
        return f"{{{path}}} must be > {meta['above']}, got {value}"
    if meta.get("below") is not None and max(values) >= meta["below"]:
        return f"{{{path}}} must be < {meta['below']}, got {value}"
    if meta.get("maximum") is not None and max(values) > meta["maximum"]:
        return f"{{{path}}} must be <= {meta['maximum']}, got {value}"
    return None


def _coerce(type_name: str, value):
    """A config value from YAML/JSON/CLI as its field's type (raises TypeError/ValueError)."""
    if value is None and type_name.endswith("| None"):
        return None
    if type_name == "tuple":
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        elif isinstance(value, (int, float)):
            value = [value]
        return tuple(_whole(v) for v in value)
    if type_name.startswith("int"):
        return _whole(value)
    if type_name.startswith("float"):
        if type_name.endswith("| None") and value == "auto":
            return None
        if isinstance(value, bool):
            raise TypeError(value)
        return float(value)
    if type_name == "bool":
        if not isinstance(value, bool):
            raise TypeError(value)
        return value
    if type_name == "str" and not isinstance(value, str):
        raise TypeError(value)
    return value


def _whole(value) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise TypeError(value)
    return int(value)
