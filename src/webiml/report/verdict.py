"""The verdict rule: when a difference measured over independent units (seeds) decides a claim."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

HOLDS = "holds"
CONTRADICTED = "contradicted"
UNDECIDED = "not decided at this size"
MISSING = "not measured at this size"
VERDICTS = (HOLDS, CONTRADICTED, UNDECIDED, MISSING)


@dataclass(frozen=True)
class Rule:
    """Decided only with at least ``min_units`` paired differences and ``|mean| > k_se · SE``."""

    min_units: int = 3
    k_se: float = 2.0

    def text(self) -> str:
        return (f"For each claim the effect is a paired difference (the claimed-better model minus its baseline, "
                f"per training seed; per pair for annotation quality). With n differences, mean m and standard "
                f"error SE = sd/√n (sd with n − 1), the claim **holds** when m > {self.k_se:g}·SE, is "
                f"**contradicted** when m < −{self.k_se:g}·SE, and is **not decided** otherwise or when "
                f"n < {self.min_units}. One seed is always not decided. A model that was not trained and "
                f"benchmarked at this size leaves its claim **not measured**.")


@dataclass(frozen=True)
class Effect:
    n: int
    mean: float | None
    se: float | None
    verdict: str
    values: tuple[float, ...] = ()


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def decide(differences: Iterable[float], rule: Rule = Rule()) -> Effect:
    """The verdict on paired differences (positive = the claim's direction)."""
    d = tuple(float(x) for x in differences if _finite(x))
    n = len(d)
    if n == 0:
        return Effect(0, None, None, MISSING)
    mean = sum(d) / n
    if n < 2:
        return Effect(n, mean, None, UNDECIDED, d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    se = sd / math.sqrt(n)
    if n < rule.min_units:
        verdict = UNDECIDED
    elif mean > rule.k_se * se:
        verdict = HOLDS
    elif mean < -rule.k_se * se:
        verdict = CONTRADICTED
    else:
        verdict = UNDECIDED
    return Effect(n, mean, se, verdict, d)


def paired(better: Mapping, baseline: Mapping, scale: float = 1.0, rule: Rule = Rule()) -> Effect:
    """``decide`` on ``better[k] − scale·baseline[k]`` over the keys (seeds, pairs) both measured."""
    keys = sorted(k for k in set(better) & set(baseline) if _finite(better[k]) and _finite(baseline[k]))
    return decide((better[k] - scale * baseline[k] for k in keys), rule)


def combine(verdicts: Sequence[str]) -> str:
    """One verdict for a claim of several parts: contradicted if any part is, holds if all do."""
    if not verdicts or all(v == MISSING for v in verdicts):
        return MISSING
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    return UNDECIDED
