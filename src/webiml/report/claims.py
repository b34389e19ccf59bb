"""The papers' claims C1–C8, measured on a workspace's outputs and judged by the verdict rule.

``evaluate`` turns the pipeline's outputs into one row per claim part and dataset; ``document``
adds the context (size, seeds, machine, rule); ``render`` writes REPRODUCTION.md from that document
alone, so the file can be regenerated from ``claims.json`` and compared.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..config import from_dict
from .results import POOLED, Results
from .verdict import CONTRADICTED, HOLDS, MISSING, UNDECIDED, Effect, Rule, combine, paired


@dataclass(frozen=True)
class ReportConfig:
    """The ``report`` section of params.yaml."""

    metric: str = "pixel_f1"          # the benchmark metric the model claims are judged on
    min_seeds: int = 3                # fewer paired differences: not decided
    k_se: float = 2.0                 # decided when |mean| > k_se · SE
    box_ratio: float = 0.85           # C6: box supervision reaches this share of full supervision
    far_less: float = 0.1             # C8: the student's GFLOPs at most this share of the teacher's
    teacher: str = "vit_b"            # C8: the SAM image encoder profiled as the teacher (random weights)
    teacher_side: int = 1024          # ... at SAM's input size
    latency_runs: int = 3             # the student's latency: median of this many timed forward passes (after one warm-up)
    teacher_latency_runs: int = 1     # the teacher's (tens of seconds each on a CPU; 0: not measured)

    @classmethod
    def from_dict(cls, d) -> ReportConfig:
        return from_dict(cls, d, "report")

    @property
    def rule(self) -> Rule:
        return Rule(self.min_seeds, self.k_se)


@dataclass(frozen=True)
class Part:
    label: str
    kind: str            # "models" (paired over seeds), "annotation" (paired over pairs) or "cost"
    better: str
    baseline: str
    scale: float = 1.0   # the effect is better − scale · baseline


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    text: str
    parts: tuple[Part, ...]
    item: str            # the reports/paper/ item that shows it


def claims(cfg: ReportConfig = ReportConfig()) -> tuple[Claim, ...]:
    return (
        Claim("C1", "Web-IML", "web supervision helps", (Part("with vs without the web dataset", "models", "webiml", "webiml-noweb"),),
              "webiml_web_supervision.md"),
        Claim("C2", "Web-IML", "QES filtering helps", (Part("QES-filtered vs all web labels", "models", "webiml", "webiml-noqes"),),
              "webiml_ablations.md"),
        Claim("C3", "Web-IML", "category-aware annotation (CAAAv2) beats one unified CIML model",
              (Part("CAAAv2 vs unified, label IoU", "annotation", "caaa", "unified"),), "webiml_annotation_quality.md"),
        Claim("C4", "Web-IML", "Object Jitter helps", (Part("with vs without Object Jitter", "models", "webiml", "webiml-nojitter"),),
              "webiml_ablations.md"),
        Claim("C5", "Web-IML", "Multi-Scale Perception and Self-Rectification help",
              (Part("with vs without MSP", "models", "webiml", "webiml-nomsp"),
               Part("with vs without SR", "models", "webiml", "webiml-nosr")), "webiml_ablations.md"),
        Claim("C6", "BoxPromptIML", f"box supervision reaches ≥ {cfg.box_ratio:.0%} of full supervision and beats image-level labels",
              (Part(f"box − {cfg.box_ratio:g} × full", "models", "boxprompt", "boxprompt-full", cfg.box_ratio),
               Part("box vs image-level", "models", "boxprompt", "boxprompt-image")), "boxprompt_supervision.md"),
        Claim("C7", "BoxPromptIML", "the memory module helps", (Part("with vs without memory", "models", "boxprompt", "boxprompt-nomemory"),),
              "boxprompt_memory_gate.md"),
        Claim("C8", "BoxPromptIML", "the student costs far less than the teacher",
              (Part(f"{cfg.far_less:g} × teacher GFLOPs − student GFLOPs", "cost", "boxprompt", "teacher", cfg.far_less),),
              "boxprompt_cost.md"),
    )


def _row(claim: Claim, part: Part, dataset: str, unit: str, effect: Effect) -> dict:
    return {"claim": claim.id, "paper": claim.paper, "text": claim.text, "part": part.label, "dataset": dataset, "unit": unit,
            "better": part.better, "baseline": part.baseline, "scale": part.scale, "n": effect.n,
            "mean": effect.mean, "se": effect.se, "verdict": effect.verdict, "values": list(effect.values), "item": claim.item}


def evaluate(results: Results, costs: dict, cfg: ReportConfig = ReportConfig()) -> list[dict]:
    """One row per claim part and dataset. ``costs``: ``{name: {"gflops": ...}}`` for the student and ``teacher``."""
    rows = []
    datasets = results.verdict_datasets() or ["synthetic"]
    for claim in claims(cfg):
        for part in claim.parts:
            if part.kind == "models":
                for ds in datasets:
                    effect = paired(results.seed_values(part.better, ds, cfg.metric),
                                    results.seed_values(part.baseline, ds, cfg.metric), part.scale, cfg.rule)
                    rows.append(_row(claim, part, ds, f"seeds ({cfg.metric})", effect))
            elif part.kind == "annotation":
                for cat, name in ((None, "corpus"), ("spg", "corpus SPG"), ("sdg", "corpus SDG")):
                    effect = paired(results.pair_values(part.better, "iou", cat), results.pair_values(part.baseline, "iou", cat),
                                    part.scale, cfg.rule)
                    rows.append(_row(claim, part, name, "pairs (IoU; one annotator training)", effect))
                for real in results.real_pairs:  # real pairs with truth (check_real), clean and after the web degradation chain
                    for cond in [c for c in results.real_conditions(real) if c in ("clean", "chain")]:
                        effect = paired(results.pair_values(part.better, "iou", real=real, condition=cond),
                                        results.pair_values(part.baseline, "iou", real=real, condition=cond), part.scale, cfg.rule)
                        where = f"{real} pairs" if cond == "clean" else f"{real} pairs, web-degraded"
                        rows.append(_row(claim, part, where, "pairs (IoU; one annotator training)", effect))
            else:  # a count, not a sample: no spread to weigh
                s, t = (costs.get(part.better) or {}).get("gflops"), (costs.get(part.baseline) or {}).get("gflops")
                if s is None or t is None:
                    effect = Effect(0, None, None, MISSING)
                else:
                    d = part.scale * t - s
                    effect = Effect(1, d, 0.0, HOLDS if d > 0 else CONTRADICTED, (d,))
                rows.append(_row(claim, part, f"{cfg.teacher} teacher at {cfg.teacher_side}²", "GFLOPs (counted)", effect))
    return rows


def evaluate_steps(results: Results, cfg: ReportConfig = ReportConfig()) -> list[dict]:
    """Each model claim part's paired effect after 1/4, 1/2 and all of the training steps, on each
    steps dataset (``results.steps``), and its ``trend``: whether the effect at the end differs from
    the effect at the first snapshot by more than ``k_se`` standard errors of that difference."""
    rows = []
    for ds, claim, part in ((d, c, p) for d in results.steps for c in claims(cfg) for p in c.parts):
        if part.kind != "models":
            continue
        better, base = results.step_values(part.better, ds, cfg.metric), results.step_values(part.baseline, ds, cfg.metric)
        steps = sorted(set(better) & set(base))
        if not steps:
            continue
        effects = [paired(better[s], base[s], part.scale, cfg.rule) for s in steps]
        first, last = effects[0], effects[-1]
        trend = UNDECIDED
        if None not in (first.se, last.se, first.mean, last.mean):
            d, se = last.mean - first.mean, math.hypot(first.se, last.se)
            trend = "moves toward the claim" if d > cfg.k_se * se else "moves against the claim" if d < -cfg.k_se * se else "stable within the spread"
        rows.append({"claim": claim.id, "part": part.label, "dataset": ds, "better": part.better, "baseline": part.baseline,
                     "steps": steps, "share": [round(s / steps[-1], 3) for s in steps],
                     "effects": [{"n": e.n, "mean": e.mean, "se": e.se, "verdict": e.verdict} for e in effects], "trend": trend})
    return rows


def verdicts(rows: list[dict]) -> dict[str, dict[str, str]]:
    """``{claim: {dataset: verdict}}``: the parts of a claim combined per dataset (C5: MSP and SR)."""
    out: dict[str, dict[str, list[str]]] = {}
    for r in rows:
        out.setdefault(r["claim"], {}).setdefault(r["dataset"], []).append(r["verdict"])
    return {c: {ds: combine(v) for ds, v in per.items()} for c, per in out.items()}


def scores(results: Results, models: list[str], cfg: ReportConfig = ReportConfig()) -> dict[str, dict]:
    """Per verdict dataset: each model's ``cfg.metric`` per seed, beside the trivial answers'."""
    return {ds: {"models": {m: sorted(v.values()) for m in models if (v := results.seed_values(m, ds, cfg.metric))},
                 "trivial": results.trivial(ds, cfg.metric)} for ds in results.verdict_datasets()}


def document(results: Results, rows: list[dict], costs: dict, machine: dict, cfg: ReportConfig = ReportConfig(),
             provenance: dict | None = None) -> dict:
    """Everything REPRODUCTION.md says, as data (written to ``claims.json``)."""
    models = sorted({r[k] for r in rows if r["unit"].startswith("seeds") for k in ("better", "baseline")})
    return {
        "size": results.size,
        "sizes": results.sizes(),
        "seeds": {m: results.seeds(m) for m in models},
        "machine": machine,
        "provenance": provenance or {},
        "config": asdict(cfg),
        "rule": cfg.rule.text(),
        "costs": costs,
        "rows": rows,
        "verdicts": verdicts(rows),
        "scores": scores(results, models, cfg),
        "steps": evaluate_steps(results, cfg),
        "step_scores": step_scores(results, models, cfg),
    }


def step_scores(results: Results, models: list[str], cfg: ReportConfig = ReportConfig()) -> dict[str, dict]:
    """Per steps dataset: each model's mean ``cfg.metric`` over its seeds at each step, and the trivial answers'."""
    out = {}
    for ds, entry in results.steps.items():
        curves = {m: {str(s): sum(v.values()) / len(v) for s, v in c.items()} for m in models if (c := results.step_values(m, ds, cfg.metric))}
        out[ds] = {"n_images": entry.get("n_images"), "models": curves,
                   "trivial": {k: v.get(cfg.metric) for k, v in (entry.get("trivial") or {}).items()}}
    return out


def budget_note(dataset: str, scores: dict) -> str:
    """What training length a steps dataset asks for, read off :func:`step_scores`: whether the best
    model beats the all-forged answer at the end, and if not, how many doublings of the steps its
    last doubling's gain would take to get there (a two-point extrapolation, said as such)."""
    triv = (scores.get("trivial") or {}).get("all-forged")
    curves = {m: {int(s): v for s, v in c.items()} for m, c in scores.get("models", {}).items() if len(c) >= 2}
    if triv is None or not curves:
        return ""
    best = max(curves, key=lambda m: curves[m][max(curves[m])])
    steps = sorted(curves[best])
    end, half = steps[-1], steps[-2]
    score = curves[best][end]
    if score > triv:
        return f"On {dataset}, `{best}` beats the all-forged answer after its {end} steps ({score:.3f} vs {triv:.3f})."
    gain = (curves[best][end] - curves[best][half]) / math.log2(end / half)
    head = f"On {dataset} no model beats the all-forged answer ({triv:.3f}) after its steps; the best, `{best}`, scores {score:.3f} after {end}."
    if gain <= 0:
        return head + " Its score did not grow over its last doubling of steps: at this size, more steps alone do not close the gap."
    k = (triv - score) / gain
    return (head + f" Over its last doubling of steps it gained {gain:+.3f}; at that rate it would need about {k:.1f} more "
            f"doublings, some {end * 2 ** k:,.0f} steps (a two-point extrapolation, not a measurement).")


def commit_text(prov: dict | None) -> str:
    """``commit abc123`` (with "plus uncommitted changes" when the tree differed), "an unknown commit"
    (run outside a git checkout), or "an unrecorded commit" (``None``: a document older than provenance)."""
    if prov is None:
        return "an unrecorded commit (the report predates recorded commits)"
    if not prov.get("commit"):
        return "an unknown commit (not a git checkout)"
    return f"commit `{prov['commit']}`" + (" plus uncommitted changes" if prov.get("dirty") else "")


def _num(x, d=3) -> str:
    return "–" if x is None else f"{x:+.{d}f}"


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    m = sum(values) / len(values)
    if len(values) == 1:
        return f"{m:.3f} (1)"
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    return f"{m:.3f} ± {sd:.3f} ({len(values)})"


def render(doc: dict) -> str:
    """REPRODUCTION.md from a ``document`` (nothing else: the file can be regenerated and compared)."""
    m, sz = doc["machine"], doc["sizes"]
    seeds = ", ".join(f"`{k}` {len(v)}" for k, v in doc["seeds"].items())
    bench = ", ".join(f"{ds} {n} images" for ds, n in sz["benchmark"].items())
    lines = [
        "# Reproduction: the papers' claims at this size",
        "",
        "Generated by the `report` stage (notebooks/08_report.ipynb) from this workspace's DVC outputs, with the code of "
        f"{commit_text(doc.get('provenance'))}; regenerate with `dvc repro report`. Do not edit by hand.",
        "",
        f"- **Size**: `{doc['size']}` — {sz['pairs']} collected pairs, annotator pool {sz['annotator_pool']} pairs, "
        f"Web-IML {sz['webiml_steps']} steps, students {sz['student_steps']} steps; benchmark: {bench or 'none'}"
        + (f", images scored with their long side capped at {sz['max_side']} px" if sz.get("max_side") else "") + ".",
        f"- **Seeds benchmarked**: {seeds or 'none'}.",
        f"- **Machine** (report stage): {m['cpu']}, {m['cores']} cores, torch {m['torch']}"
        + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU: every figure here is a CPU figure") + ".",
        "",
        "## Verdict rule",
        "",
        doc["rule"] + " C8 compares counted GFLOPs (deterministic) and needs no spread.",
        "",
        "## Claims",
        "",
        "| claim | paper | dataset | verdict |",
        "|---|---|---|---|",
    ]
    texts = {r["claim"]: (r["paper"], r["text"], r["item"]) for r in doc["rows"]}
    for c, per in doc["verdicts"].items():
        paper, text, item = texts[c]
        for ds, v in per.items():
            lines.append(f"| [{c}](paper/{item}) {text} | {paper} | {ds} | **{v}** |")
    lines += ["", "## Measured effects", "",
              "Effect = mean paired difference (positive: the claim's direction) ± its standard error, over n units.", "",
              "| claim | part | dataset | unit | n | effect ± SE | verdict |", "|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        se = "" if r["se"] is None else f" ± {r['se']:.3f}"
        lines.append(f"| {r['claim']} | {r['part']} | {r['dataset']} | {r['unit']} | {r['n']} | {_num(r['mean'])}{se} | {r['verdict']} |")
    benchmarked = [m for m, seeds in doc["seeds"].items() if seeds]
    if doc.get("scores") and benchmarked:
        lines += ["", "## Every model beside the trivial answers", "",
                  f"{doc['config']['metric']} per dataset, mean ± std over the seeds benchmarked (n). *all-forged* marks every "
                  "pixel as manipulated, *empty* none: a model below the all-forged row has not learnt to localize.", "",
                  "| dataset | " + " | ".join(f"`{m}`" for m in benchmarked) + " | *all-forged* | *empty* |",
                  "|---|" + "---|" * (len(benchmarked) + 2)]
        for ds, sc in doc["scores"].items():
            cells = [_mean_sd(sc["models"].get(m, [])) for m in benchmarked]
            triv = [f"*{sc['trivial'][k]:.3f}*" if k in sc["trivial"] else "–" for k in ("all-forged", "empty")]
            lines.append(f"| {ds} | " + " | ".join(cells + triv) + " |")
    if doc.get("steps"):
        lines += ["", "## Does the verdict move with training length?", "",
                  "Each claim's paired effect after a quarter, half and all of the training steps (snapshots of the same runs, "
                  "on a fixed subset of each dataset's tampered images); the trend compares the effect at the end with the first "
                  f"snapshot (more than {doc['config']['k_se']:g} standard errors of the difference: it moves; otherwise it is "
                  "stable within the spread). Figure: [paper/effect_vs_steps.png](paper/effect_vs_steps.png)."]
        for ds, sc in (doc.get("step_scores") or {}).items():
            rows = [r for r in doc["steps"] if r["dataset"] == ds]
            if not rows:
                continue
            lines += ["", f"**{ds}** ({sc['n_images']} tampered images):", "",
                      "| claim | part | " + " | ".join(f"{s:.0%} of steps" for s in rows[0]["share"]) + " | trend |",
                      "|---|---|" + "---|" * (len(rows[0]["share"]) + 1)]
            for r in rows:
                cells = [f"{_num(e['mean'])}" + (f" ± {e['se']:.3f}" if e["se"] is not None else "") for e in r["effects"]]
                lines.append(f"| {r['claim']} | {r['part']} | " + " | ".join(cells) + f" | {r['trend']} |")
            lines += ["", "| model (mean over seeds) | " + " | ".join(f"{s:.0%}" for s in rows[0]["share"]) + " | *all-forged* |",
                      "|---|" + "---|" * (len(rows[0]["share"]) + 1)]
            for m, curve in sc["models"].items():
                vals = list(curve.values())
                lines.append(f"| `{m}` | " + " | ".join(f"{v:.3f}" for v in vals) + f" | *{sc['trivial'].get('all-forged', float('nan')):.3f}* |")
            if note := budget_note(ds, sc):
                lines += ["", note]
    if doc["costs"]:
        lines += ["", "## Costs behind C8", "", "| model | parameters (M) | GFLOPs | input | latency (ms, this machine) |", "|---|---|---|---|---|"]
        for name, c in doc["costs"].items():
            lat = "–" if c.get("latency_ms") is None else f"{c['latency_ms']:.0f}"
            lines.append(f"| {name} | {c['parameters'] / 1e6:.2f} | {c['gflops']:.2f} | {c['side']}² | {lat} |")
    lines += ["", "Figures and tables of the papers' items: [paper/README.md](paper/README.md).", ""]
    return "\n".join(lines)


def readme_block(doc: dict, link: str) -> str:
    """The README's results section: the verdicts of a claims report, quoted from its document."""
    seeds = ", ".join(f"`{k}` {len(v)}" for k, v in doc["seeds"].items())
    gpu = f", {doc['machine']['gpu']}" if doc["machine"].get("gpu") else ", no GPU"
    lines = [f"Verdicts of [{link}]({link}) — size `{doc['size']}`, {commit_text(doc.get('provenance'))}, seeds {seeds}; "
             f"{doc['machine']['cores']} CPU cores{gpu}.",
             "", "| claim | verdict per dataset |", "|---|---|"]
    texts = {r["claim"]: r["text"] for r in doc["rows"]}
    for c, per in doc["verdicts"].items():
        lines.append(f"| {c} {texts[c]} | " + "; ".join(f"{ds}: **{v}**" for ds, v in per.items()) + " |")
    return "\n".join(lines)
