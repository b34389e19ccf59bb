"""The annotators on real pairs with truth: collect, annotate and filter a real folder as the
pipeline does its corpus, and score every annotation method against the truth.

- NoSo (real copy-moves with their sources; its truth marks the copy-move's source *and* target,
  and only the target changes between the two images);
- COVERAGE (real copy-moves over similar-but-genuine objects; the truth ``<N>forged`` is exactly
  what changed between the two images). Its masks are those of the ``real_data`` stage, fitted to
  their images; a pair whose mask could not be fitted is annotated but not scored, and listed.

For each: registration quality, label IoU / F1 per method against the truth, against what the
pair can show (the visible truth) and the ceiling a pair-based annotator reaches, and what QES and
the guard keep. Everything is written under a work folder; the input folders are only read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from .. import collect as C, io
from ..caaa import quality as Q
from ..caaa.annotate import annotate_corpus, build_method
from ..caaa.dataset import build_dataset
from ..caaa.guard import GuardConfig

METHODS = ("caaa", "unified", "naive")
_DATASET_KEYS = ("n", "kept", "dropped", "dropped_by_reason", "kept_by_qes_alone", "removed_by_guard", "refused_by_guard")
_ROW_KEYS = ("id", "iou", "f1", "visible_iou", "ceiling_iou", "qes", "refused", "predicted_category")


def check_pairs(candidates: Iterable[C.Candidate], work: Path, cfg: C.CollectConfig, models_dir: Path, guard: GuardConfig,
                threshold: float, methods: Iterable[str] = METHODS) -> dict:
    """Registration, label quality per method and the filtered dataset of real pairs with truth;
    ``rows`` holds the per-pair scores of each method (for figures), ``per_pair`` those of CAAAv2."""
    work = Path(work)
    methods = tuple(methods)
    collected = C.collect(candidates, work / "pairs", cfg, audit=work / "audit", progress=False)
    for m in methods:
        annotate_corpus(work / "pairs", build_method(m, models_dir), work / m, progress=False, guard=guard)
    rows = Q.score_methods({m: work / m for m in methods}, work / "audit", work / "pairs", guard)
    ds = build_dataset(work / "caaa", work / "dataset", threshold=threshold, progress=False, guard=guard)
    return {"n_pairs": collected["n_candidates"], "n_collected": collected["n_accepted"],
            "rejected_by_reason": collected["rejected_by_reason"],
            "registration": C.registration_summary(C.registration_quality(work / "pairs", work / "audit")),
            "quality": {m: Q.summary(r)["overall"] for m, r in rows.items()},
            "dataset": {k: ds[k] for k in _DATASET_KEYS},
            "per_pair": [{k: r.get(k) for k in _ROW_KEYS} for r in rows["caaa"]],
            "rows": rows}


def check_noso(folder: Path, work: Path, cfg: C.CollectConfig, models_dir: Path, guard: GuardConfig, threshold: float) -> dict:
    """:func:`check_pairs` on a NoSo folder."""
    return check_pairs(C.noso_candidates(folder), work, cfg, models_dir, guard, threshold)


def check_coverage(folder: Path, prepared: Path, work: Path, cfg: C.CollectConfig, models_dir: Path, guard: GuardConfig,
                   threshold: float) -> dict:
    """:func:`check_pairs` on COVERAGE's pairs, with the truth masks of the ``real_data`` stage
    (``prepared``: its COVERAGE index); ``unscored`` lists the pairs without a usable mask and why."""
    truth = {img.stem: mask for img, mask in io.read_index(prepared) if mask is not None}
    report_file = Path(prepared).parent / "report.json"
    skipped = io.read_jsonl(Path(prepared).parent / "rejected.jsonl") if (Path(prepared).parent / "rejected.jsonl").is_file() else []
    listed = set(truth) | {Path(s["image"]).stem for s in skipped}  # the pairs the prepared set holds (all, unless a subset)
    out = check_pairs((c for c in C.coverage_candidates(folder, truth) if Path(c.forged).stem in listed), work, cfg, models_dir,
                      guard, threshold)
    out["unscored"] = [{"pair": Path(s["image"]).stem, "reason": s["reason"], "detail": s.get("detail")} for s in skipped]
    if report_file.is_file():
        out["resized_masks"] = [{"pair": Path(n["image"]).stem, "detail": n["detail"]}
                                for n in json.loads(report_file.read_text()).get("notes", []) if n.get("note") == "resized-mask"]
    return out


def _f(x, d: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{d}f}"


def summary_markdown(name: str, result: dict) -> str:
    """A real set's check as markdown: registration, label quality per method with the ceiling,
    what the filter keeps, and the pairs left unscored with their reason."""
    reg, ds = result["registration"], result["dataset"]
    lines = [f"**{name}**: {result['n_collected']} of {result['n_pairs']} pairs collected "
             f"(rejected: {result['rejected_by_reason'] or 'none'}); {reg['n_registered']} registered, median "
             f"|forged − registered authentic| outside the edit {reg['outside_diff']}.", "",
             "| method | IoU / F1 | visible IoU | ceiling IoU | share of ceiling | pairs scored |", "|---|---|---|---|---|---|"]
    for m, s in result["quality"].items():
        lines.append(f"| {m} | {_f(s['mean_iou'])} / {_f(s['mean_f1'])} | {_f(s['mean_visible_iou'])} | {_f(s['ceiling_iou'])} "
                     f"| {_f(s['share_of_ceiling'], 2)} | {s['n']} |")
    lines += ["", f"CAAAv2 labels kept by QES and the guard: {ds['kept']} of {ds['n']} (dropped by reason: {ds['dropped_by_reason'] or 'none'})."]
    if result.get("unscored"):
        lines += ["", "Pairs not scored (no truth mask that fits the image): "
                  + "; ".join(f"{u['pair']} ({u['reason']}: {u['detail']})" for u in result["unscored"]) + "."]
    if result.get("resized_masks"):
        lines += ["", "Truth masks resized to their image (same aspect ratio): "
                  + "; ".join(f"{u['pair']} ({u['detail']})" for u in result["resized_masks"]) + "."]
    return "\n".join(lines)
