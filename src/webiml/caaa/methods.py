"""The annotation methods, each defined once: CAAAv2, its classifier-routed variant and the baselines.

Names here are what ``annotate.baselines``, the data folders (``data/annotations/<method>``), the
quality report and ``webiml annotate --method`` use.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Method:
    annotator: str  # a key of webiml.caaa.annotate.BUILTIN_ANNOTATORS
    help: str
    options: dict = field(default_factory=dict)  # what the method fixes (the rest comes from params)
    trained: bool = True  # reads the trained annotators (models_dir, device)


METHODS = {
    "caaa": Method("caaa", "CAAAv2: routed by collect's registration where decisive, else by the pair classifier"),
    "caaa-classifier": Method("caaa", "CAAAv2 routed by the pair classifier alone (the paper's routing)", {"route": "classifier"}),
    "unified": Method("unified", "one DASS-style model for both categories (the unified baseline)"),
    "naive": Method("naive", "the thresholded |forged - registered authentic| (no training)", trained=False),
}
