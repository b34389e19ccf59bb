"""The annotators on real pairs with truth: collect, annotate and filter a real folder as the
pipeline does its corpus, and score every annotation method against the truth.

- NoSo (real copy-moves with their sources; its truth marks the copy-move's source *and* target,
  and only the target changes between the two images);
- COVERAGE (real copy-moves over similar-but-genuine objects; the truth ``<N>forged`` is exactly
  what changed between the two images). Its masks are those of the ``real_data`` stage, fitted to
  their images; a pair whose mask could not be fitted is annotated but not scored, and listed.

For each: registration quality, label IoU / F1 per method against the truth, against what the
pair can show (the visible truth) and the ceiling a pair-based annotator reaches, and what QES and
the guard keep; then the same after each web degradation of :mod:`.degrade` and their chain. Everything
is written under a work folder; the input folders are only read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import collect as C, io
from ..caaa import quality as Q
from ..caaa.annotate import annotate_corpus, build_method
from ..caaa.dataset import build_dataset
from ..caaa.guard import GuardConfig
from .degrade import CHAIN, CLEAN, WebDegradation, conditions, degraded_candidates

METHODS = ("caaa", "caaa-classifier", "unified", "naive")
_DATASET_KEYS = ("n", "kept", "dropped", "dropped_by_reason", "kept_by_qes_alone", "removed_by_guard", "refused_by_guard")
_ROW_KEYS = ("id", "iou", "f1", "visible_iou", "ceiling_iou", "qes", "refused", "predicted_category")


def check_pairs(candidates: Iterable[C.Candidate], work: Path, cfg: C.CollectConfig, models_dir: Path, guard: GuardConfig,
                threshold: float, methods: Iterable[str] = METHODS) -> dict:
    """Registration, label quality per method and the filtered dataset of real pairs with truth;
    ``rows`` holds the per-pair scores of each method (for figures), ``per_pair`` those of CAAAv2."""
    work = Path(work)
    methods = tuple(methods)
    collected = C.collect(candidates, work / "pairs", cfg, audit=work / "audit", progress=False)
    for m in methods:  # the classifier-routed variant reuses CAAAv2's masks where both routes agree
        annotator = build_method(m, models_dir, reuse=work / "caaa" if "caaa" in methods[:methods.index(m)] else None)
        annotate_corpus(work / "pairs", annotator, work / m, progress=False, guard=guard)
    rows = Q.score_methods({m: work / m for m in methods}, work / "audit", work / "pairs", guard)
    ds = build_dataset(work / "caaa", work / "dataset", threshold=threshold, progress=False, guard=guard)
    kept = {r["id"] for r in io.read_jsonl(work / "dataset" / "kept.jsonl")}
    kept_iou = [r["iou"] for r in rows["caaa"] if r["id"] in kept and r.get("iou") is not None]
    return {"n_pairs": collected["n_candidates"], "n_collected": collected["n_accepted"],
            "rejected_by_reason": collected["rejected_by_reason"],
            "registration": C.registration_summary(C.registration_quality(work / "pairs", work / "audit")),
            "quality": {m: Q.summary(r)["overall"] for m, r in rows.items()},
            "dataset": {**{k: ds[k] for k in _DATASET_KEYS}, "n_kept_scored": len(kept_iou),  # what the web dataset would hold
                        "kept_mean_iou": float(np.mean(kept_iou)) if kept_iou else None},
            "per_pair": [{k: r.get(k) for k in _ROW_KEYS} for r in rows["caaa"]],
            "rows": rows}


def _paired(clean: list[dict], degraded: list[dict]) -> dict:
    """Mean and standard error of (degraded − clean) IoU over the pairs scored in both."""
    before = {r["id"]: r["iou"] for r in clean if r.get("iou") is not None}
    d = [r["iou"] - before[r["id"]] for r in degraded if r.get("iou") is not None and r["id"] in before]
    if not d:
        return {"n": 0, "mean": None, "se": None}
    return {"n": len(d), "mean": float(np.mean(d)), "se": float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None}


def check_conditions(candidates: Iterable[C.Candidate], work: Path, cfg: C.CollectConfig, models_dir: Path, guard: GuardConfig,
                     threshold: float, degradation: WebDegradation = WebDegradation(), seed: int = 0, max_pairs: int | None = None,
                     desc: str = "") -> dict:
    """:func:`check_pairs` on the clean pairs, then after each web degradation and their chain
    (:func:`.degrade.conditions`) on at most ``max_pairs`` of them (a seeded subset; ``None``: all).
    The clean result is returned as is, with ``degraded``: ``{condition: result}``, whose ``vs_clean``
    holds each method's paired IoU difference to the clean pairs."""
    from tqdm import tqdm

    candidates = list(candidates)
    subset = candidates
    if max_pairs is not None and len(candidates) > max_pairs:
        subset = [candidates[i] for i in sorted(np.random.default_rng(seed).choice(len(candidates), max_pairs, replace=False))]
    conds = conditions(degradation)
    bar = tqdm([CLEAN, *conds], desc=f"check_real · {desc}" if desc else "check_real", unit="condition", leave=False)
    out: dict = {}
    for name in bar:
        bar.set_postfix_str(name)
        if name == CLEAN:
            out = check_pairs(candidates, work / CLEAN, cfg, models_dir, guard, threshold)
            out["degraded"] = {}
        else:
            degraded = degraded_candidates(subset, conds[name], work / name / "input", seed)
            r = check_pairs(degraded, work / name, cfg, models_dir, guard, threshold)
            r["steps"] = {s: getattr(conds[name], s) for s in conds[name].steps()}
            r["vs_clean"] = {m: _paired(out["rows"][m], rows) for m, rows in r["rows"].items()}
            r.pop("per_pair")
            out["degraded"][name] = r
    return out


def check_noso(folder: Path, work: Path, cfg: C.CollectConfig, models_dir: Path, guard: GuardConfig, threshold: float,
               degradation: WebDegradation = WebDegradation(), seed: int = 0, max_pairs: int | None = None) -> dict:
    """:func:`check_conditions` on a NoSo folder."""
    return check_conditions(C.noso_candidates(folder), work, cfg, models_dir, guard, threshold, degradation, seed, max_pairs, "noso")


def check_coverage(folder: Path, prepared: Path, work: Path, cfg: C.CollectConfig, models_dir: Path, guard: GuardConfig,
                   threshold: float, degradation: WebDegradation = WebDegradation(), seed: int = 0, max_pairs: int | None = None) -> dict:
    """:func:`check_conditions` on COVERAGE's pairs, with the truth masks of the ``real_data`` stage
    (``prepared``: its COVERAGE index); ``unscored`` lists the pairs without a usable mask and why."""
    truth = {img.stem: mask for img, mask in io.read_index(prepared) if mask is not None}
    report_file = Path(prepared).parent / "report.json"
    skipped = io.read_jsonl(Path(prepared).parent / "rejected.jsonl") if (Path(prepared).parent / "rejected.jsonl").is_file() else []
    listed = set(truth) | {Path(s["image"]).stem for s in skipped}  # the pairs the prepared set holds (all, unless a subset)
    out = check_conditions((c for c in C.coverage_candidates(folder, truth) if Path(c.forged).stem in listed), work, cfg,
                           models_dir, guard, threshold, degradation, seed, max_pairs, "coverage")
    out["unscored"] = [{"pair": Path(s["image"]).stem, "reason": s["reason"], "detail": s.get("detail")} for s in skipped]
    if report_file.is_file():
        out["resized_masks"] = [{"pair": Path(n["image"]).stem, "detail": n["detail"]}
                                for n in json.loads(report_file.read_text()).get("notes", []) if n.get("note") == "resized-mask"]
    return out


def pair_rows(result: dict) -> list[dict]:
    """Every scored pair of a real set, per method and condition (``reports/real_pairs/<set>.jsonl``);
    pops the rows out of ``result``, which keeps the summaries."""
    out = [{"method": m, "condition": CLEAN, **row} for m, rows in result.pop("rows").items() for row in rows]
    for name, r in result.get("degraded", {}).items():
        out += [{"method": m, "condition": name, **row} for m, rows in r.pop("rows").items() for row in rows]
    return out


def write_outputs(results: dict, work: Path, pairs_dir: Path, figures_dir: Path, n_examples: int) -> list[str]:
    """The stage's outputs for ``{set: result}`` of :func:`check_coverage` / :func:`check_noso` (their
    work folder: ``work/<set>``): per-pair rows ``<pairs_dir>/<set>.jsonl``, figures per set (CAAAv2 per
    pair and its ``n_examples`` worst pairs, clean and after the chain) and across sets (IoU per
    condition). The rows leave ``results``; returns each set's markdown summary."""
    pairs_dir.mkdir(parents=True, exist_ok=True)  # also when every set is skipped
    figures_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for name, r in results.items():
        rows = pair_rows(r)
        io.write_jsonl(pairs_dir / f"{name}.jsonl", rows)
        for cond in (CLEAN, CHAIN):
            caaa = [x for x in rows if x["method"] == "caaa" and x["condition"] == cond]
            if not caaa:
                continue
            stem = name if cond == CLEAN else f"{name}_{cond}"
            io.save_figure(Q.per_image(caaa, f"{name} ({cond}), CAAAv2 per pair"), figures_dir / f"{stem}_per_pair.png")
            worst = [x["id"] for x in sorted(caaa, key=lambda x: x["iou"])[:n_examples]]
            w = Path(work) / name / cond
            io.save_figure(Q.example_grid(w / "caaa", w / "audit", w / "pairs", worst, n=len(worst), show_visible=True),
                           figures_dir / f"{stem}_worst.png")
        out.append(summary_markdown(name, r))
    io.save_figure(condition_figure(results), figures_dir / "degradations.png")
    return out


def _f(x, d: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{d}f}"


def _counts(by_reason: dict | None) -> str:
    """``{"qes<=0.5": 11}`` as ``11 qes<=0.5``."""
    return ", ".join(f"{v} {k}" for k, v in sorted((by_reason or {}).items())) or "none"


def summary_markdown(name: str, result: dict) -> str:
    """A real set's check as markdown: registration, label quality per method with the ceiling,
    what the filter keeps, and the pairs left unscored with their reason."""
    reg, ds = result["registration"], result["dataset"]
    d = reg.get("outside_diff") or {}
    diff = (f"; |forged − registered authentic| outside the edit (0–255): median {d['median']:g}, p95 {d['p95']:g}, max {d['max']:g} "
            f"over {d['n']} pairs" if d.get("n") else "")
    lines = [f"**{name}**: {result['n_collected']} of {result['n_pairs']} pairs collected "
             f"(rejected: {_counts(result['rejected_by_reason'])}); {reg['n_registered']} registered{diff}.", "",
             "| method | IoU / F1 | visible IoU | ceiling IoU | share of ceiling | pairs scored |", "|---|---|---|---|---|---|"]
    for m, s in result["quality"].items():
        lines.append(f"| {m} | {_f(s['mean_iou'])} / {_f(s['mean_f1'])} | {_f(s['mean_visible_iou'])} | {_f(s['ceiling_iou'])} "
                     f"| {_f(s['share_of_ceiling'], 2)} | {s['n']} |")
    lines += ["", f"CAAAv2 labels kept by QES and the guard: {ds['kept']} of {ds['n']} (dropped: {_counts(ds['dropped_by_reason'])})"
              + (f"; the kept labels with truth have mean IoU {_f(ds['kept_mean_iou'])} ({ds['n_kept_scored']})." if ds.get("n_kept_scored") else ".")]
    if result.get("unscored"):
        lines += ["", "Pairs not scored (no truth mask that fits the image): "
                  + "; ".join(f"{u['pair']} ({u['reason']}: {u['detail']})" for u in result["unscored"]) + "."]
    if result.get("resized_masks"):
        lines += ["", "Truth masks resized to their image (same aspect ratio): "
                  + "; ".join(f"{u['pair']} ({u['detail']})" for u in result["resized_masks"]) + "."]
    if result.get("degraded"):
        lines += ["", degraded_markdown(result)]
    return "\n".join(lines)


def _steps(steps: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in steps.items())


def _kept(ds: dict) -> str:
    """``kept (mean IoU of the kept labels with truth)``: the labels a web dataset would hold, and how good they are."""
    return f"{ds['kept']} ({_f(ds.get('kept_mean_iou'))})" if ds.get("n_kept_scored") else str(ds["kept"])


def degraded_markdown(result: dict) -> str:
    """Mean IoU per method, clean and after each web degradation (one row each) and their chain, with
    the first method's kept labels (and their IoU: QES drops doubtful labels, so a condition can cost
    labels rather than label quality) and its paired difference to the clean pairs."""
    methods = list(result["quality"])
    head = ["condition", "pairs collected", *(f"{m} IoU" for m in methods), f"{methods[0]} kept (their IoU)",
            f"{methods[0]} IoU − clean (same pairs) ± SE"]
    rows = [[CLEAN, result["n_collected"], *(_f(result["quality"][m]["mean_iou"]) for m in methods), _kept(result["dataset"]), ""]]
    for name, r in result["degraded"].items():
        q, d = r["quality"], r.get("vs_clean", {}).get(methods[0], {})
        delta = "n/a" if d.get("mean") is None else f"{d['mean']:+.3f} ± {_f(d['se'])} ({d['n']} pairs)"
        rows.append([f"{name} ({_steps(r['steps'])})" if name == CHAIN else f"{_steps(r['steps'])}", r["n_collected"],
                     *(_f(q.get(m, {}).get("mean_iou")) for m in methods), _kept(r["dataset"]), delta])
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    n = max((r["n_pairs"] for r in result["degraded"].values()), default=0)
    return (f"After web degradations of the forged image ({n} of the {result['n_pairs']} pairs; the authentic image is left as "
            "is; the chain applies every step in turn, seeded per pair). No ceiling here: it is read from the pair's pixel "
            "differences, which re-compression and a colour cast spread over the whole image.\n\n" + "\n".join(table))


def condition_figure(results: dict):
    """Mean IoU per method and condition, one panel per real set, the ceiling as a line per condition."""
    import matplotlib.pyplot as plt

    sets = [s for s, r in results.items() if r and r.get("degraded")]
    fig, axes = plt.subplots(1, max(1, len(sets)), figsize=(6.5 * max(1, len(sets)), 3.8), squeeze=False)
    for ax, name in zip(axes[0], sets):
        r = results[name]
        conds = {CLEAN: r, **r["degraded"]}
        methods = list(r["quality"])
        width = 0.8 / len(methods)
        for i, m in enumerate(methods):
            ax.bar([k + (i - (len(methods) - 1) / 2) * width for k in range(len(conds))],
                   [c["quality"].get(m, {}).get("mean_iou") or 0 for c in conds.values()], width, label=m)
        ax.scatter([0], [r["quality"][methods[0]]["ceiling_iou"] or 0], marker="_", s=400, color="k", label="ceiling (clean)", zorder=3)
        ax.set_xticks(range(len(conds)), list(conds), rotation=20)
        ax.set_ylim(0, 1.18)  # head room for the legend above the bars
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_ylabel("mean label IoU")
        ax.set_title(f"{name}: annotation after web degradations (clean: every pair; the others: "
                     f"{max(x['n_pairs'] for x in r['degraded'].values())})", fontsize=9)
        ax.legend(fontsize=7, ncol=len(methods) + 1, loc="upper center")
    if not sets:
        axes[0][0].text(0.5, 0.5, "no real set with truth (paths.real absent)", ha="center", va="center")
        axes[0][0].axis("off")
    fig.tight_layout()
    return fig
