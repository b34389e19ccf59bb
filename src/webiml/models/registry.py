"""Named models: the checkpoints the pipeline trains, by the names users type.

``webiml`` and its ablation variants (``webiml-noweb``, ...) come from the ``train_webiml`` stage,
the BoxPromptIML students (``boxprompt``, ``boxprompt-full``, ...) from ``train_boxprompt``; both
one per seed (``webiml@seed1``; the bare name is the lowest seed trained).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UnknownName
from ..runid import RunId

WEBIML_DIR = Path("models/webiml")
BOXPROMPT_DIR = Path("models/boxprompt")

@dataclass(frozen=True)
class Variant:
    """A Web-IML ablation variant: what it is, its model-config overrides and its training data."""

    help: str
    model: dict = field(default_factory=dict)
    web: str = "qes"  # the web dataset it trains on: qes (QES-filtered), all (unfiltered) or none
    jitter: bool = True  # Object Jitter samples in the mixture


@dataclass(frozen=True)
class Student:
    """A BoxPromptIML student: what it is, its supervision and its model-config overrides."""

    help: str
    supervision: str  # teacher (pseudo-masks), truth, box (filled boxes) or image (image-level labels)
    model: dict = field(default_factory=dict)


WEBIML_VARIANTS: dict[str, Variant] = {
    "webiml": Variant("Web-IML: MSP + SR, web data (QES-filtered) + Object Jitter"),
    "webiml-noweb": Variant("without the web dataset", web="none"),
    "webiml-noqes": Variant("web annotations without QES filtering (all kept)", web="all"),
    "webiml-nojitter": Variant("without Object Jitter", jitter=False),
    "webiml-nomsp": Variant("without Multi-Scale Perception", model={"msp": False}),
    "webiml-nosr": Variant("without Self-Rectification", model={"sr_passes": 0}),
    "webiml-fpn": Variant("plain FPN baseline, same encoder and data", model={"decoder": "fpn"}),
}
STUDENTS: dict[str, Student] = {
    "boxprompt": Student("student distilled from the box-prompted teacher (memory + gates)", "teacher"),
    "boxprompt-nomemory": Student("the same without the prototype memory", "teacher", {"memory": False}),
    "boxprompt-nogate": Student("the same without the per-scale gates (every G_i = 1)", "teacher", {"gates": False}),
    "boxprompt-full": Student("the student fully supervised by truth masks (upper bound)", "truth"),
    "boxprompt-box": Student("the student supervised by filled boxes", "box"),
    "boxprompt-image": Student("the student from image-level labels only (CAM-style weak baseline)", "image"),
}


def describe(name: str) -> str:
    """What a named model is."""
    return (WEBIML_VARIANTS.get(name) or STUDENTS[name]).help


def known_names() -> list[str]:
    return [*WEBIML_VARIANTS, *STUDENTS]


def model_dir(name: str, seed: int = 0, root: str | Path = ".") -> Path:
    """Where the stage writes model ``name`` trained with ``seed``."""
    root = Path(root)
    if name in WEBIML_VARIANTS:
        return root / WEBIML_DIR / name / f"seed{seed}"
    if name in STUDENTS:
        return root / BOXPROMPT_DIR / name / f"seed{seed}"
    raise UnknownName(f"unknown model name {name!r}; known: {', '.join(known_names())}")


def producing_stage(name: str) -> str:
    return f"train_webiml@{name}-<seed>" if name in WEBIML_VARIANTS else "train_boxprompt"


def seeds_trained(name: str, root: str | Path = ".") -> list[int]:
    base = model_dir(name, 0, root).parent
    return sorted(int(p.name[4:]) for p in base.glob("seed*") if p.name[4:].isdigit() and (p / "model.pt").is_file())


def resolve(name_or_path: str | Path, root: str | Path = ".") -> Path:
    """A checkpoint path from a model name (``webiml``, ``webiml@seed1``, ...) or a path."""
    s = str(name_or_path)
    p = Path(s)
    if p.suffix == ".pt" or p.is_file():
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint not found: {p}")
        return p
    try:
        name, seed = RunId.parse(s)
    except ValueError:
        name, seed = s, None
    if name not in WEBIML_VARIANTS and name not in STUDENTS:
        raise UnknownName(f"{s!r} is neither a checkpoint file nor a model name; known names: {', '.join(known_names())}")
    if seed is None:
        seeds = seeds_trained(name, root)
        seed = seeds[0] if seeds else 0
    path = model_dir(name, seed, root) / "model.pt"
    if not path.is_file():
        stage = producing_stage(name).replace("<seed>", str(seed))
        raise FileNotFoundError(
            f"model {s!r} is not trained yet ({path} missing): run `dvc repro {stage}`"
            + (" (add it to train_webiml.variants in params.yaml, or run `make ablations`)" if name in WEBIML_VARIANTS and name not in ("webiml", "webiml-noweb") else "")
            + (f" (with {seed} in train_boxprompt.seeds)" if name in STUDENTS and (seed != 0 or seeds_trained(name, root)) else "")
        )
    return path


def list_models(root: str | Path = ".") -> list[dict]:
    """Every known name with what it is, whether it is trained and where."""
    rows = []
    for name in known_names():
        seeds = seeds_trained(name, root)
        rows.append({
            "name": name,
            "what": describe(name),
            "trained": bool(seeds),
            "seeds": seeds,
            "path": str(model_dir(name, seeds[0] if seeds else 0, root) / "model.pt"),
            "stage": producing_stage(name),
        })
    return rows
