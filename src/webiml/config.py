"""Strict settings, checked in one place: a params.yaml section becomes a dataclass, and an unknown
key, a value of the wrong type or a number out of its range is an error naming the key.

A dataclass field's annotation gives its type (``int``, ``float``, ``bool``, ``str``, ``X | None``,
``tuple[...]``, ``dict``, a nested dataclass given as a mapping); its range, where it has one, is
declared with :func:`bounded`. Command-line numbers go through the same rule (:func:`check` via
:func:`flag`), so ``--threads 0`` and ``threads: 0`` get the same message.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import types
import typing
from typing import Any, Callable, Mapping, TypeVar

from .errors import UsageError

T = TypeVar("T")

#: torch/OpenMP threads a setting may ask for (far more than any machine here; a huge count crashes OpenMP)
MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))


def bounded(default: Any, lo: float | None = None, hi: float | None = None) -> Any:
    """A dataclass field whose value must lie in ``[lo, hi]`` (either end open when None)."""
    return dataclasses.field(default=default, metadata={"range": (lo, hi)})


_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _describe(tp: Any) -> str:
    if tp in _NAMES:
        return _NAMES[tp]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) if a is not type(None) else "null" for a in typing.get_args(tp))
    if origin is tuple or tp is tuple:
        return "a list"
    if origin is dict or tp is dict or origin is Mapping:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping of {tp.__name__} settings"
    return getattr(tp, "__name__", str(tp))


def check(key: str, value: Any, tp: Any, lo: float | None = None, hi: float | None = None) -> Any:
    """``value`` as a setting of type ``tp`` (lists become tuples, a mapping for a dataclass type
    becomes that dataclass), else :class:`UsageError` naming ``key``. ``int`` takes no bools and no
    fractions; ``float`` takes ints (kept as they are); ``lo``/``hi`` bound numbers."""
    hint = ""
    if isinstance(value, str) and tp in (int, float):
        try:
            float(value)
            hint = " (quoted, or YAML 1.1 read it as text: write 1.0e-3, not 1e-3)"
        except ValueError:
            pass
    bad = UsageError(f"{key}: must be {_describe(tp)}, got {value!r}{hint}")
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad
        for a in args:
            if a is type(None):
                continue
            try:
                return check(key, value, a, lo, hi)
            except UsageError as e:
                last = e
        raise last if len(args) == 2 else bad
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float) if tp is float else int):
            raise bad
        if value != value:  # NaN
            raise UsageError(f"{key}: must be a number, got NaN")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            span = f"at least {lo:g}" if hi is None else f"at most {hi:g}" if lo is None else f"in {lo:g}..{hi:g}"
            raise UsageError(f"{key}: must be {span}, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        args = typing.get_args(tp)
        if args and args[-1] is Ellipsis:
            return tuple(check(f"{key}[{i}]", v, args[0], lo, hi) for i, v in enumerate(value))
        if args:
            if len(value) != len(args):
                raise UsageError(f"{key}: must be a list of {len(args)}, got {value!r}")
            return tuple(check(f"{key}[{i}]", v, a, lo, hi) for i, (v, a) in enumerate(zip(value, args)))
        return tuple(value)
    if origin is dict or tp is dict or origin is Mapping:
        if not isinstance(value, Mapping):
            raise bad
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise bad
        return from_dict(tp, value, key)
    return value  # Any, Literal and the like: not checked here


@functools.lru_cache(maxsize=None)
def _fields(cls: type) -> dict[str, tuple[Any, tuple, Any]]:
    """name -> (type, range, default) of a dataclass's fields (``Any`` where a hint cannot be resolved)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # a hint naming what its module cannot import: the field goes unchecked
        hints = {}
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        out[f.name] = (hints.get(f.name, Any), f.metadata.get("range", (None, None)), default)
    return out


def from_dict(cls: type[T], d: Mapping[str, Any] | None, section: str, base: T | None = None) -> T:
    """``cls`` (or a copy of ``base``) with the keys of ``d`` set, each checked by :func:`check`.

    A key that is not a field of ``cls`` raises :class:`UsageError` (a ``ValueError``) naming the
    key, the params ``section`` and the allowed keys, so a typo fails at once instead of being
    ignored; so does a value of the wrong type or out of its range. A nested dataclass field takes
    a mapping (its own keys checked the same way, over the field's default).
    """
    if d is None:
        d = {}
    if not isinstance(d, Mapping):
        raise UsageError(f"params section {section!r} must be a mapping, got {type(d).__name__}")
    fields = _fields(cls)
    unknown = sorted(set(d) - set(fields), key=str)
    if unknown:
        raise UsageError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                         f"in params section {section!r}; allowed: {', '.join(fields)}")
    values = {}
    for k, v in d.items():
        tp, (lo, hi), default = fields[k]
        if dataclasses.is_dataclass(tp) and isinstance(v, Mapping):
            sub = getattr(base, k) if base is not None else default
            values[k] = from_dict(tp, v, f"{section}.{k}", base=sub if isinstance(sub, tp) else None)
        else:
            values[k] = check(f"{section}.{k}", v, tp, lo, hi)
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except (TypeError, ValueError) as e:  # the dataclass's own checks (__post_init__)
        if isinstance(e, UsageError):
            raise
        raise UsageError(f"params section {section!r}: {e}") from None


def flag(tp: type, lo: float | None = None, hi: float | None = None) -> Callable[[str], Any]:
    """An argparse ``type`` for a number: parsed, then checked by :func:`check` with ``[lo, hi]``."""

    def parse(text: str) -> Any:
        try:
            value = tp(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {_NAMES.get(tp, tp.__name__)}, got {text!r}") from None
        try:
            return check("value", value, tp, lo, hi)
        except UsageError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("value: ")) from None

    parse.__name__ = tp.__name__  # argparse names the type in its messages
    return parse
