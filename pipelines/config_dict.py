"""Strict conversion between frozen config dataclasses and the plain dicts used at Ray/MLflow/CLI boundaries.

`from_dict(cls, d)` walks the type hints: nested dataclasses, `X | None`, tuples, and unions of dataclasses
told apart by a `kind` key: the class's own `kind` field, else its class name (added by `to_dict`).
Unknown or missing keys raise ValueError naming the dotted key.
"""

import dataclasses
import json
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")


def from_dict(cls: type[T], d: Any, *, path: str = "") -> T:
    """Build dataclass `cls` from `d`; every key must be a field of `cls` (recursively)."""
    if not isinstance(d, dict):
        raise ValueError(f"{path or cls.__name__}: expected a mapping for {cls.__name__}, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"unknown config key {_join(path, unknown[0])!r}; allowed: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _convert(hints[name], value, _join(path, name)) for name, value in d.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field is missing
        raise ValueError(f"{path or cls.__name__}: {err}") from None


def to_dict(config: Any) -> dict:
    """Like `dataclasses.asdict`, with tuples as lists and a `kind` key on members of config unions."""
    hints = typing.get_type_hints(type(config))
    return {f.name: _plain(getattr(config, f.name), tag=_is_config_union(hints[f.name]))
            for f in dataclasses.fields(config)}


def parse_scalar(text: str) -> Any:
    """A `--set` value: JSON, else YAML (`3`, `1e-4`, `true`, `null`, `[1, 2]`, `abc` -> "abc")."""
    try:
        return json.loads(text)  # first, because YAML 1.1 reads `1e-4` as a string
    except json.JSONDecodeError:
        return yaml.safe_load(text)


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """tree["a"]["b"]["c"] = value for dotted == "a.b.c"; the parent keys must exist."""
    keys = dotted.split(".")
    node = tree
    for i, key in enumerate(keys[:-1]):
        if not isinstance(node.get(key), dict):
            raise ValueError(f"unknown config key {'.'.join(keys[: i + 1])!r} in --set {dotted}=...")
        node = node[key]
    if keys[-1] not in node:
        raise ValueError(f"unknown config key {dotted!r}; allowed at that level: {sorted(node)}")
    node[keys[-1]] = value


def deep_merge(base: dict, overlay: dict) -> dict:
    """A copy of `base` with `overlay` merged in; a mapping whose `kind` changes is replaced whole."""
    merged = dict(base)
    for key, value in overlay.items():
        old = merged.get(key)
        same_kind = isinstance(old, dict) and isinstance(value, dict) and value.get("kind", old.get("kind")) == old.get("kind")
        merged[key] = deep_merge(old, value) if same_kind else value
    return merged


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None:
            if type(None) in args:
                return None
            raise ValueError(f"{path}: null is not allowed")
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _convert(options[0], value, path)
        return _convert_union(options, value, path)
    if origin is Literal:
        return value  # the dataclass __post_init__ names the allowed set
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        item_hints = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(item_hints) != len(value):
            raise ValueError(f"{path}: expected {len(item_hints)} values, got {value!r}")
        return tuple(_convert(h, v, f"{path}[{i}]") for i, (h, v) in enumerate(zip(item_hints, value)))
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path=path)
    return _check_scalar(hint, value, path)


def _convert_union(options: list, value: Any, path: str) -> Any:
    classes = [a for a in options if dataclasses.is_dataclass(a)]
    if classes and isinstance(value, dict):
        kinds = {_kind(c): c for c in classes}
        # No kind: a config written when the field was still its first member alone (Refusion's net before the
        # U-Net joined NAFNet), so it is that member.
        kind = value.get("kind", _kind(classes[0]))
        if kind not in kinds:
            raise ValueError(f"{path}.kind must be one of {sorted(kinds)}, got {kind!r}")
        cls = kinds[kind]
        if not _has_kind_field(cls):
            value = {k: v for k, v in value.items() if k != "kind"}
        return from_dict(cls, value, path=path)
    for option in options:
        try:
            return _convert(option, value, path)
        except ValueError:
            continue
    raise ValueError(f"{path}: {value!r} matches none of {options}")


def _kind(cls: type) -> str:
    """A union member's tag: its `kind` field's default, else its class name."""
    if _has_kind_field(cls):
        return {f.name: f for f in dataclasses.fields(cls)}["kind"].default
    return cls.__name__


def _has_kind_field(cls: type) -> bool:
    return any(f.name == "kind" and f.default is not dataclasses.MISSING for f in dataclasses.fields(cls))


def _is_config_union(hint: Any) -> bool:
    if typing.get_origin(hint) not in (Union, types.UnionType):
        return False
    return sum(dataclasses.is_dataclass(a) for a in typing.get_args(hint)) > 1


def _check_scalar(hint: Any, value: Any, path: str) -> Any:
    if hint is float:
        value = _as_float(value, path)
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise ValueError(f"{path}: expected {hint.__name__}, got {value!r}")
    return value


def _as_float(value: Any, path: str) -> Any:
    """An int or a numeric string (YAML 1.1 reads `1e-4` as one) as a float; NaN and infinities are refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{path}: expected float, got {value!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path}: must be a finite number, got {value!r}")
    return value


def _plain(value: Any, *, tag: bool = False) -> Any:
    if dataclasses.is_dataclass(value):
        d = to_dict(value)
        return {"kind": _kind(type(value))} | d if tag and not _has_kind_field(type(value)) else d
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
