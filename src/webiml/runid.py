"""``RunId``: a trained model's name and training seed, written ``name@seedN``."""

from __future__ import annotations

import re
from typing import NamedTuple

_PATTERN = re.compile(r"^(?P<name>[a-z0-9-]+)@seed(?P<seed>\d+)$")


class RunId(NamedTuple):
    name: str
    seed: int

    def __str__(self) -> str:
        return f"{self.name}@seed{self.seed}"

    @classmethod
    def parse(cls, text: str) -> RunId:
        """``"webiml@seed1"`` -> ``RunId("webiml", 1)``; raises ``ValueError`` on anything else."""
        m = _PATTERN.match(text)
        if m is None:
            raise ValueError(f"not a run id (name@seedN): {text!r}")
        return cls(m["name"], int(m["seed"]))

    @classmethod
    def split(cls, text: str) -> tuple[str, int | None]:
        """``(name, seed)`` of a run id, ``(text, None)`` for anything else (a bare name, a path)."""
        try:
            return cls.parse(text)
        except ValueError:
            return text, None
