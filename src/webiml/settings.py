"""The params.yaml sections the ``webiml`` commands read, key by key: what ``--set`` may change and
the type and range of every value, checked by :func:`webiml.config.from_dict` whether or not the
command runs inside a workspace. Sections the library reads as dataclasses reuse them (``guard``,
``collect``, the trainers' ``model``/``train``/``mixture``/``pool``); the others are declared here.
"""

from dataclasses import dataclass, field
from typing import Any, Mapping

from .config import MAX_THREADS, bounded, from_dict
from .errors import UsageError


@dataclass(frozen=True)
class AnnotateSection:
    batch_size: int = bounded(8, 1)
    route: str = "auto"
    tta: bool = True
    baselines: tuple[str, ...] = ("caaa-classifier", "unified", "naive")
    threads: int = bounded(2, 1, MAX_THREADS)
    device: str = "auto"


@dataclass(frozen=True)
class FilterSection:
    qes_threshold: float = bounded(0.5, 0.0, 1.0)
    n_examples: int = bounded(8, 0)


@dataclass(frozen=True)
class BenchmarkSection:
    datasets: dict = field(default_factory=dict)
    max_side: int = bounded(512, 32)
    robustness: dict = field(default_factory=dict)
    robustness_models: tuple[str, ...] = ()
    robustness_datasets: tuple[str, ...] = ()
    steps: dict = field(default_factory=lambda: {"datasets": [], "max_images": 60})
    n_examples: int = bounded(6, 0)
    device: str = "auto"


@dataclass(frozen=True)
class CollectPaths:
    csv: str | None = None
    root: str | None = None
    miml_root: str | None = None
    noso_root: str | None = None
    manifest: str | None = None


@dataclass(frozen=True)
class CocoPaths:
    annotations: str | None = None
    images: str | None = None


@dataclass(frozen=True)
class PathsSection:
    real: dict = field(default_factory=dict)
    collect: CollectPaths = CollectPaths()
    coco: CocoPaths = CocoPaths()
    sam_checkpoint: str | None = None


def _collect() -> type:
    from .collect import CollectConfig

    @dataclass(frozen=True)
    class CollectSection(CollectConfig):  # + the keys the stage reads (collect.STAGE_KEYS)
        sources: tuple[str, ...] = ("synthetic",)
        n_pairs: int = bounded(200, 1)
        n_examples: int = bounded(6, 0)

    return CollectSection


def _train_annotators() -> type:
    from .caaa.pool import PoolConfig

    @dataclass(frozen=True)
    class TrainAnnotatorsSection:  # per-model training keys are checked by train_annotators.parse_params
        encoder: str = "tf_efficientnet_lite0"
        weights: str = "offline"
        pool: PoolConfig = field(default_factory=PoolConfig)
        val_fraction: float = bounded(0.15, 0.0, 0.9)
        classifier: dict = field(default_factory=dict)
        dass: dict = field(default_factory=dict)
        corr: dict = field(default_factory=dict)
        unified: dict = field(default_factory=dict)
        device: str = "auto"  # the keys shared by the four trainings (train_annotators.SHARED_KEYS)
        precision: str = "fp32"
        threads: int = bounded(2, 1, MAX_THREADS)
        weight_decay: float = bounded(0.01, 0.0)
        checkpoint_every: int = bounded(50, 1)
        num_workers: int = bounded(0, 0)
        pin_memory: bool = True
        prefetch_factor: int = bounded(2, 1)

    return TrainAnnotatorsSection


def _train_webiml() -> type:
    from .mixture import MixtureConfig
    from .models.webiml import WebIMLConfig
    from .train import TrainConfig

    @dataclass(frozen=True)
    class TrainWebimlSection:
        variants: tuple[str, ...] = ()
        seeds: tuple[int, ...] = ()
        model: WebIMLConfig = field(default_factory=WebIMLConfig)
        train: TrainConfig = field(default_factory=TrainConfig)
        mixture: MixtureConfig = field(default_factory=MixtureConfig)

    return TrainWebimlSection


def _train_boxprompt() -> type:
    from .models.boxprompt import BoxPromptConfig
    from .train import TrainConfig
    from .train_boxprompt import BoxPromptDataConfig, SimulatedBoxes

    @dataclass(frozen=True)
    class TrainBoxpromptSection:
        students: tuple[str, ...] = ()
        seeds: tuple[int, ...] = ()
        teacher: str = "grabcut"
        sam_model_type: str = "vit_b"
        boxes: SimulatedBoxes = field(default_factory=SimulatedBoxes)
        data: BoxPromptDataConfig = field(default_factory=BoxPromptDataConfig)
        model: BoxPromptConfig = field(default_factory=BoxPromptConfig)
        train: TrainConfig = field(default_factory=TrainConfig)

    return TrainBoxpromptSection


def _guard() -> type:
    from .caaa.guard import GuardConfig

    return GuardConfig


#: section name -> its dataclass (built when first asked for: the trainers' imports are heavy)
_SECTIONS: dict[str, Any] = {
    "annotate": AnnotateSection, "filter": FilterSection, "benchmark": BenchmarkSection, "paths": PathsSection,
    "guard": _guard, "collect": _collect, "train_annotators": _train_annotators, "train_webiml": _train_webiml,
    "train_boxprompt": _train_boxprompt,
}


def section_class(name: str) -> type:
    """The dataclass declaring the keys of params section ``name``."""
    c = _SECTIONS[name]
    if not isinstance(c, type):
        c = _SECTIONS[name] = c()
    return c


def check_section(name: str, values: Mapping | None, where: str = "") -> None:
    """Raise :class:`webiml.errors.UsageError` naming the key (and the file ``where`` it came from)
    when ``values`` (a params section) holds a key the section does not have, or a value of the
    wrong type or out of its range."""
    try:
        from_dict(section_class(name), values, name)
    except UsageError as e:
        raise UsageError(f"{where}: {e}" if where else str(e)) from None


def allowed_keys(name: str) -> list[str]:
    from dataclasses import fields

    return [f.name for f in fields(section_class(name))]
