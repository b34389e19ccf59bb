"""The label guard: refuse an annotation that cannot be right, whatever its QES.

QES = #(p > 15/16) / #(p > 1/16) rewards any confident mask, and a whole-image mask most of all:
two unrelated images can get QES 1.0. The guard is a separate check, applied wherever labels are
kept (``annotate`` records its verdict, ``build-dataset`` and the filter stage drop on it,
``annotate-pair`` answers ``kept: false``); QES itself is unchanged and still reported.

An annotation is refused, with one of these reasons, when

* ``no-shared-content``: registration found no evidence that the two images share content (a
  pair collected with ``keep_unmatched``); ``keep_unmatched: true`` here keeps such labels,
  flagged ``unmatched``;
* ``empty-mask``: no pixel of the binarised mask is set;
* ``mask-too-large``: more than ``max_fraction`` of the image is set (0.75, Object Jitter's rule
  for an instance that is not an edit but the picture).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np

from ..config import from_dict

NO_SHARED_CONTENT = "no-shared-content"
EMPTY = "empty-mask"
TOO_LARGE = "mask-too-large"
REASONS = (NO_SHARED_CONTENT, EMPTY, TOO_LARGE)
UNMATCHED_FLAG = "unmatched"


@dataclass(frozen=True)
class GuardConfig:
    """The ``guard`` section of params.yaml."""

    enabled: bool = True
    max_fraction: float = 0.75  # refuse masks covering more of the image than this
    keep_unmatched: bool = False  # keep labels of pairs without evidence of shared content (flagged)

    def __post_init__(self):
        if not 0.0 < float(self.max_fraction) <= 1.0:
            raise ValueError(f"guard.max_fraction must be in (0, 1], got {self.max_fraction}")

    @classmethod
    def from_dict(cls, d: Mapping | None) -> "GuardConfig":
        return from_dict(cls, d, "guard")

    def to_dict(self) -> dict:
        return asdict(self)


def mask_fraction(soft: np.ndarray, mask_threshold: float = 0.5) -> float:
    """Share of pixels that the binarised mask sets: ``p > mask_threshold`` for a float map in
    [0, 1], ``v > 255 * mask_threshold`` for a uint8 map, the mask itself for a bool one."""
    m = np.asarray(soft)
    if m.size == 0:
        return 0.0
    if m.dtype == np.bool_:
        on = m
    elif m.dtype == np.uint8:
        on = m > 255.0 * mask_threshold
    else:
        on = m > mask_threshold
    return float(np.count_nonzero(on) / m.size)


def verdict(fraction: float, registration: str | None, cfg: GuardConfig = GuardConfig()) -> str | None:
    """The reason to refuse an annotation whose binarised mask covers ``fraction`` of the image,
    from a pair with registration status ``registration`` (None: unknown); None to accept."""
    if not cfg.enabled:
        return None
    if registration == NO_SHARED_CONTENT and not cfg.keep_unmatched:
        return NO_SHARED_CONTENT
    if fraction <= 0.0:
        return EMPTY
    if fraction > cfg.max_fraction:
        return TOO_LARGE
    return None


def flags(registration: str | None, cfg: GuardConfig = GuardConfig()) -> list[str]:
    """Flags a kept label carries: ``unmatched`` when it was kept only because the user chose to."""
    return [UNMATCHED_FLAG] if cfg.enabled and cfg.keep_unmatched and registration == NO_SHARED_CONTENT else []


def add_arguments(parser) -> None:
    """The guard's command-line options; an option not given leaves the params ``guard`` section (or
    :class:`GuardConfig`'s default) in force (see :func:`from_args`)."""
    d = GuardConfig()
    g = parser.add_argument_group("label guard")
    g.add_argument("--no-guard", action="store_true", help="keep labels on QES alone (the papers' rule)")
    g.add_argument("--max-fraction", type=float, default=None,
                   help=f"refuse masks covering more of the image than this (default: guard.max_fraction, else {d.max_fraction})")
    g.add_argument("--keep-unmatched", action="store_true",
                   help="keep labels of pairs without evidence of shared content (flagged 'unmatched')")


def from_args(args, section: Mapping | None = None) -> GuardConfig:
    """The guard: the params ``guard`` section (default: :class:`GuardConfig`'s), overridden by the flags given."""
    d = dict(section or {})
    if args.no_guard:
        d["enabled"] = False
    if args.max_fraction is not None:
        d["max_fraction"] = args.max_fraction
    if args.keep_unmatched:
        d["keep_unmatched"] = True
    return GuardConfig.from_dict(d)
