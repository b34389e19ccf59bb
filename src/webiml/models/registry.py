"""Named models: the checkpoints the pipeline trains, by the names users type.

``webiml`` and its ablation variants (``webiml-noweb``, ...) come from the ``train_webiml`` stage,
the BoxPromptIML students (``boxprompt``, ``boxprompt-full``, ...) from ``train_boxprompt``; both
one per seed (``webiml@seed1``; the bare name is the lowest seed trained).
"""

from __future__ import annotations

import re
from pathlib import Path

WEBIML_DIR = Path("models/webiml")
BOXPROMPT_DIR = Path("models/boxprompt")

#: Web-IML ablation variants: name -> (what changes, overrides of model config / data switches)
WEBIML_VARIANTS: dict[str, dict] = {
    "webiml": {},
    "webiml-noweb": {"web": "none"},
    "webiml-noqes": {"web": "all"},
    "webiml-nojitter": {"jitter": False},
    "webiml-nomsp": {"model": {"msp": False}},
    "webiml-nosr": {"model": {"sr_passes": 0}},
    "webiml-fpn": {"model": {"decoder": "fpn"}},
}
VARIANT_HELP = {
    "webiml": "Web-IML: MSP + SR, web data (QES-filtered) + Object Jitter",
    "webiml-noweb": "without the web dataset",
    "webiml-noqes": "web annotations without QES filtering (all kept)",
    "webiml-nojitter": "without Object Jitter",
    "webiml-nomsp": "without Multi-Scale Perception",
    "webiml-nosr": "without Self-Rectification",
    "webiml-fpn": "plain FPN baseline, same encoder and data",
}
BOXPROMPT_MODELS: dict[str, str] = {
    "boxprompt": "student distilled from the box-prompted teacher (memory + gates)",
    "boxprompt-nomemory": "the same without the prototype memory",
    "boxprompt-full": "the student fully supervised by truth masks (upper bound)",
    "boxprompt-box": "the student supervised by filled boxes",
    "boxprompt-image": "the student from image-level labels only (CAM-style weak baseline)",
}

_SEEDED = re.compile(r"^(?P<name>[a-z0-9-]+)@seed(?P<seed>\d+)$")


def known_names() -> list[str]:
    return [*WEBIML_VARIANTS, *BOXPROMPT_MODELS]


def model_dir(name: str, seed: int = 0, root: str | Path = ".") -> Path:
    """Where the stage writes model ``name`` trained with ``seed``."""
    root = Path(root)
    if name in WEBIML_VARIANTS:
        return root / WEBIML_DIR / name / f"seed{seed}"
    if name in BOXPROMPT_MODELS:
        return root / BOXPROMPT_DIR / name / f"seed{seed}"
    raise KeyError(f"unknown model name {name!r}; known: {', '.join(known_names())}")


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
    m = _SEEDED.match(s)
    name, seed = (m["name"], int(m["seed"])) if m else (s, None)
    if name not in WEBIML_VARIANTS and name not in BOXPROMPT_MODELS:
        raise KeyError(f"{s!r} is neither a checkpoint file nor a model name; known names: {', '.join(known_names())}")
    if seed is None:
        seeds = seeds_trained(name, root)
        seed = seeds[0] if seeds else 0
    path = model_dir(name, seed, root) / "model.pt"
    if not path.is_file():
        stage = producing_stage(name).replace("<seed>", str(seed))
        raise FileNotFoundError(
            f"model {s!r} is not trained yet ({path} missing): run `dvc repro {stage}`"
            + (" (add it to train_webiml.variants in params.yaml, or run `make ablations`)" if name in WEBIML_VARIANTS and name not in ("webiml", "webiml-noweb") else "")
            + (f" (with {seed} in train_boxprompt.seeds)" if name in BOXPROMPT_MODELS and (seed != 0 or seeds_trained(name, root)) else "")
        )
    return path


def list_models(root: str | Path = ".") -> list[dict]:
    """Every known name with what it is, whether it is trained and where."""
    rows = []
    for name in known_names():
        seeds = seeds_trained(name, root)
        rows.append({
            "name": name,
            "what": VARIANT_HELP.get(name) or BOXPROMPT_MODELS.get(name, ""),
            "trained": bool(seeds),
            "seeds": seeds,
            "path": str(model_dir(name, seeds[0] if seeds else 0, root) / "model.pt"),
            "stage": producing_stage(name),
        })
    return rows
