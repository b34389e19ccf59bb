"""The real-pair checks: collect, annotate and filter real folders, as the pipeline does its corpus.

- NoSo (real copy-moves with their sources and truth): registration quality, the annotation quality
  of CAAAv2 and the baselines against the truth, and what QES and the guard keep.
- Real web pairs (``samplePairs.csv`` of forged,authentic paths; no truth): what CAAAv2 routes
  where, the QES distribution, and which labels the guard refuses and why.

Everything is written under a work folder; the input folders are only read.
"""

from __future__ import annotations

from pathlib import Path

from .. import collect as C, io
from ..caaa import quality as Q
from ..caaa.annotate import annotate_corpus, build_method
from ..caaa.dataset import build_dataset
from ..caaa.guard import GuardConfig

NOSO_METHODS = ("caaa", "unified", "naive")
WEB_PAIRS_CSV = "samplePairs.csv"
_DATASET_KEYS = ("n", "kept", "dropped", "dropped_by_reason", "kept_by_qes_alone", "removed_by_guard", "refused_by_guard")


def check_noso(folder: Path, work: Path, cfg: C.CollectConfig, models_dir: Path, guard: GuardConfig,
               threshold: float) -> dict:
    """Registration, label quality per method and the filtered dataset on NoSo; ``rows`` holds the
    per-pair scores of each method (for figures)."""
    work = Path(work)
    C.collect(C.noso_candidates(folder), work / "pairs", cfg, audit=work / "audit", progress=False)
    for m in NOSO_METHODS:
        annotate_corpus(work / "pairs", build_method(m, models_dir), work / m, progress=False, guard=guard)
    rows = Q.score_methods({m: work / m for m in NOSO_METHODS}, work / "audit", work / "pairs", guard)
    ds = build_dataset(work / "caaa", work / "dataset", threshold=threshold, progress=False, guard=guard)
    return {"registration": C.registration_summary(C.registration_quality(work / "pairs", work / "audit")),
            "quality": {m: Q.summary(r)["overall"] for m, r in rows.items()},
            "dataset": {k: ds[k] for k in _DATASET_KEYS},
            "per_image": [{k: r[k] for k in ("id", "iou", "visible_iou", "ceiling_iou", "qes", "refused")} for r in rows["caaa"]],
            "rows": rows}


def check_web_pairs(folder: Path, work: Path, cfg: C.CollectConfig, models_dir: Path, guard: GuardConfig,
                    threshold: float) -> dict:
    """CAAAv2 on real web pairs without truth: routing, QES and what the guard refuses."""
    work = Path(work)
    report = C.collect(C.pairs_csv_candidates(Path(folder) / WEB_PAIRS_CSV, folder), work / "pairs", cfg, progress=False)
    annotate_corpus(work / "pairs", build_method("caaa", models_dir), work / "caaa", progress=False, guard=guard)
    ds = build_dataset(work / "caaa", work / "dataset", threshold=threshold, progress=False, guard=guard)
    recs = io.read_jsonl(work / "caaa" / "annotations.jsonl")
    refused = [d for d in io.read_jsonl(work / "dataset" / "dropped.jsonl") if d["reason"] in ds["refused_by_guard"]]
    return {"n_candidates": report["n_candidates"], "n_collected": report["n_accepted"],
            "rejected_by_reason": report["rejected_by_reason"], "n_annotated": len(recs),
            "per_category": {c: sum(r["category"] == c for r in recs) for c in ("spg", "sdg")},
            "dataset": {k: ds[k] for k in _DATASET_KEYS}, "refused": refused, "records": recs}
