"""Strict conversion of a params.yaml section into a dataclass: an unknown key is an error."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def from_dict(cls: type[T], d: Mapping[str, Any] | None, section: str, base: T | None = None) -> T:
    """``cls`` (or a copy of ``base``) with the keys of ``d`` set; lists become tuples.

    A key that is not a field of ``cls`` raises ``ValueError`` naming the key, the params
    ``section`` and the allowed keys, so a typo fails at once instead of being ignored.
    """
    if d is None:
        d = {}
    if not isinstance(d, Mapping):
        raise ValueError(f"params section {section!r} must be a mapping, got {type(d).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ValueError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                         f"in params section {section!r}; allowed: {', '.join(names)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return dataclasses.replace(base, **values) if base is not None else cls(**values)
