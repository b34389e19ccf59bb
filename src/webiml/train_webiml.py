"""The train_webiml stage's recipe: one Web-IML ablation variant, its mixture and its training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .config import from_dict
from .errors import UnknownName
from .mixture import MixtureConfig, build_mixture
from .models.registry import WEBIML_VARIANTS
from .models.webiml import WebIML, WebIMLConfig
from .train import Mixture, TrainConfig, fit


@dataclass
class WebIMLRun:
    """Everything one Web-IML training run needs (see :func:`prepare_webiml`)."""

    variant: str
    seed: int
    model: nn.Module
    model_config: Any
    train_config: TrainConfig
    mixture: Mixture
    report: dict
    web: str | None
    real: str | None = None


def prepare_webiml(
    variant: str,
    params: dict,
    seed: int,
    web_dataset: str | Path | None,
    web_all_dataset: str | Path | None = None,
    data_seed: int = 0,
    real_dataset: str | Path | None = None,
) -> WebIMLRun:
    """Model, settings and training mixture of one Web-IML ablation variant with one seed.

    ``params`` is the ``train_webiml`` section (``model``, ``train``, ``mixture``); variants are
    ``models.registry.WEBIML_VARIANTS``. The generated training data depend on ``data_seed`` only,
    so seeds differ in initialisation and sampling order. ``web_dataset`` is the QES-filtered web
    dataset, ``web_all_dataset`` the unfiltered one (used by ``webiml-noqes``); ``real_dataset`` the
    hand-labelled real training set every variant trains on (None: none).
    """
    if variant not in WEBIML_VARIANTS:
        raise UnknownName(f"unknown Web-IML variant {variant!r}; known: {', '.join(WEBIML_VARIANTS)}")
    spec = WEBIML_VARIANTS[variant]
    tcfg = from_dict(TrainConfig, {**params.get("train", {}), "seed": seed}, "train_webiml.train")
    mcfg = from_dict(WebIMLConfig, {**params.get("model", {}), **spec.model, "input_size": tcfg.size}, "train_webiml.model")
    web_kind = spec.web
    web = {"none": None, "all": web_all_dataset, "qes": web_dataset}[web_kind]
    if web_kind != "none":
        if web is None:
            raise ValueError(f"variant {variant} needs the {'unfiltered' if web_kind == 'all' else 'QES-filtered'} web dataset")
        if not Path(web).exists():
            raise FileNotFoundError(f"web dataset {web} not found: run `dvc repro filter` first")
    mixture, report = build_mixture(from_dict(MixtureConfig, params.get("mixture", {}), "train_webiml.mixture"),
                                    seed=data_seed, web_index=web, use_jitter=spec.jitter, real_index=real_dataset)
    torch.manual_seed(seed)
    model = WebIML(mcfg)
    return WebIMLRun(variant, seed, model, mcfg, tcfg, mixture, report, str(web) if web else None,
                     str(real_dataset) if real_dataset else None)


def train_webiml(run: WebIMLRun, out: str | Path, progress: bool = True) -> dict:
    """Train a prepared run into ``out`` (``model.pt``, ``history.csv``, ``train.json``)."""
    summary = fit(run.model, run.mixture, run.train_config, out, run.model_config, progress=progress,
                  extra={"variant": run.variant, "seed": run.seed, "web": run.web, "real": run.real, "mixture": run.report})
    summary.update({"variant": run.variant, "seed": run.seed, "web": run.web, "real": run.real})
    return summary
