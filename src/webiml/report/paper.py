"""The papers' items (figures and tables) that the pipeline can produce, written to ``reports/paper/``.

Each item is titled after the paper's item and shows the paper's published number beside ours where
one is known (``published.yaml``); every number of ours comes from the workspace's outputs.
"""

from __future__ import annotations

import math
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from .. import io
from ..caaa import quality as Q
from ..evaluate import benchmark as B
from .claims import ReportConfig
from ..runid import RunId
from .results import Results
from .verdict import CONTRADICTED, HOLDS, Rule, paired

WEBIML_ABLATIONS = {"webiml-noqes": "QES filtering", "webiml-nojitter": "Object Jitter", "webiml-nomsp": "Multi-Scale Perception",
                    "webiml-nosr": "Self-Rectification", "webiml-fpn": "MSP + SR vs a plain FPN decoder"}
SUPERVISION = {"boxprompt-full": "full masks (upper bound)", "boxprompt": "boxes → teacher pseudo-masks",
               "boxprompt-box": "filled boxes", "boxprompt-image": "image-level labels"}
FUSION = {"boxprompt-nomemory": "prototype memory", "boxprompt-nogate": "per-scale gates"}
COLOURS = {HOLDS: "tab:green", CONTRADICTED: "tab:red"}


def published() -> dict:
    return yaml.safe_load(resources.files("webiml.report").joinpath("published.yaml").read_text())


def published_f1(method: str) -> dict[str, dict]:
    """``{dataset: {"value", "protocol"}}``: a method's published pixel F1 (``published.yaml``'s ``benchmarks``)."""
    return next((b["pixel_f1"] for b in published()["benchmarks"] if b["method"] == method), {})


def _ms(values) -> str:
    vals = list(values)
    if not vals:
        return "–"
    return f"{np.mean(vals):.3f}" + (f" ± {np.std(vals, ddof=1):.3f}" if len(vals) > 1 else "") + f" ({len(vals)})"


def _delta(results: Results, better: str, baseline: str, ds: str, key: str, rule: Rule) -> str:
    e = paired(results.seed_values(better, ds, key), results.seed_values(baseline, ds, key), rule=rule)
    if e.n == 0:
        return "–"
    return f"{e.mean:+.3f}" + (f" ± {e.se:.3f}" if e.se is not None else "") + f" (n={e.n}, {e.verdict})"


def _table(head: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def _header(title: str, results: Results, what: str) -> str:
    return f"# {title}\n\nOurs: size `{results.size}`, {what}. Mean ± std over seeds (number of seeds).\n\n"


# ------------------------------------------------------------------------------------------- Web-IML


def annotation_quality(results: Results) -> tuple[str, object]:
    """Web-IML: annotation quality per category for CAAAv2, classifier-routed CAAAv2, unified and naive."""
    methods = sorted({r["method"] for r in results.pairs}, key=["caaa", "caaa-classifier", "unified", "naive"].index)
    summaries = {m: Q.summary([r for r in results.pairs if r["method"] == m]) for m in methods}
    rows = []
    for m, s in summaries.items():
        cells = [m]
        for g in ("spg", "sdg"):
            c = s["per_category"].get(g) or {}
            cells.append("–" if not c else f"{c['mean_iou']:.3f} / {c['mean_f1']:.3f} (n={c['n']})")
        cells.append(f"{s['overall']['mean_iou']:.3f} / {s['overall']['mean_f1']:.3f}")
        rows.append(cells)
    md = (f"# Annotation quality per category (Web-IML, CAAAv2 vs baselines)\n\nOurs: size `{results.size}`, the held-out synthetic "
          f"web-like corpus ({len(results.pair_values('caaa'))} pairs, truth from the audit folder). IoU / F1 of the soft "
          "label binarised at 0.5. The paper reports this comparison on its own annotated pairs; its numbers are not "
          "recorded here.\n\n" + _table(["method", "SPG IoU / F1", "SDG IoU / F1", "all IoU / F1"], rows) + "\n"
          + real_pair_quality(results))
    fig = Q.method_bars(summaries)
    fig.axes[0].set_title("Annotation quality per category (CAAAv2, classifier-routed, unified, naive)", fontsize=9)
    return md, fig


def real_pair_quality(results: Results) -> str:
    """Every annotation method on the real pairs with truth (check_real): IoU / F1 against the truth,
    against what the pair can show, and as a share of the ceiling a pair-based annotator reaches."""
    if not results.real_pairs:
        return ""
    out = ["", "## Real pairs with truth (COVERAGE, NoSo)", "",
           "The same methods on real forged/authentic pairs (the check_real stage). COVERAGE's truth is exactly what changed "
           "between the two images; NoSo's also marks the copy-move's source, which a pair cannot show: read it against the "
           "ceiling.", ""]
    f = lambda x, d=3: "–" if x is None else f"{x:.{d}f}"  # noqa: E731
    order = ["caaa", "caaa-classifier", "unified", "naive"]
    rows, degraded = [], []
    for real, pairs in results.real_pairs.items():
        methods = sorted({r["method"] for r in pairs}, key=lambda m: order.index(m) if m in order else len(order))
        for cond in results.real_conditions(real):
            summaries = {m: Q.summary([r for r in pairs if r["method"] == m and r.get("condition", "clean") == cond])["overall"]
                         for m in methods}
            if cond == "clean":
                rows += [[real, m, o["n"], f"{f(o['mean_iou'])} / {f(o['mean_f1'])}", f(o["mean_visible_iou"]), f(o["ceiling_iou"]),
                          f(o["share_of_ceiling"], 2)] for m, o in summaries.items()]
            degraded.append([real, cond, next(iter(summaries.values()))["n"], *(f(o["mean_iou"]) for o in summaries.values())])
    text = "\n".join(out) + "\n" + _table(["pairs", "method", "n", "IoU / F1", "visible IoU", "ceiling IoU", "share of ceiling"], rows) + "\n"
    if any(r[1] != "clean" for r in degraded):
        text += ("\nThe same pairs after web degradations of the forged image (check_real's `degradations`: each step alone, "
                 "then the chain; a seeded subset of the pairs, `degraded_pairs`), mean label IoU:\n\n"
                 + _table(["pairs", "condition", "n", *methods], degraded) + "\n")
    return text


def qes_figure(results: Results, threshold: float):
    """Web-IML: QES vs true IoU (scatter with Spearman) and the threshold trade-off, side by side."""
    import matplotlib.pyplot as plt

    rows = [r for r in results.pairs if r["method"] == "caaa"]
    parts = [Q.qes_scatter(rows, threshold), Q.qes_tradeoff(Q.qes_analysis(rows, threshold))]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, part in zip(axes, parts):
        part.canvas.draw()
        ax.imshow(np.asarray(part.canvas.buffer_rgba()))
        ax.axis("off")
        plt.close(part)
    fig.suptitle(f"QES as a label-quality estimate (the paper keeps QES > {published()['webiml']['qes_threshold']:g}; ours: {threshold:g})", fontsize=10)
    fig.tight_layout()
    return fig


def web_supervision(results: Results, cfg: ReportConfig) -> str:
    rows = [[ds, _ms(results.seed_values("webiml", ds, cfg.metric).values()), _ms(results.seed_values("webiml-noweb", ds, cfg.metric).values()),
             _delta(results, "webiml", "webiml-noweb", ds, cfg.metric, cfg.rule)] for ds in results.verdict_datasets()]
    return (_header("Web supervision: each model with and without web data (Web-IML)", results, f"{cfg.metric}")
            + f"Paper: {published()['webiml']['web_supervision']}, with {published()['webiml']['mimlv2_images']:,} web images.\n\n"
            + _table(["dataset", "webiml (with web)", "webiml-noweb", "paired difference ± SE"], rows) + "\n")


def ablations(results: Results, cfg: ReportConfig) -> tuple[str, object]:
    import matplotlib.pyplot as plt

    rows, bars = [], []
    for v, what in WEBIML_ABLATIONS.items():
        for ds in results.verdict_datasets():
            vals = results.seed_values(v, ds, cfg.metric)
            if not vals:
                continue
            e = paired(results.seed_values("webiml", ds, cfg.metric), vals, rule=cfg.rule)
            rows.append([what, v, ds, _ms(vals.values()), _delta(results, "webiml", v, ds, cfg.metric, cfg.rule)])
            bars.append((f"{what} · {ds}", e))
    md = (_header("Ablations: QES, Object Jitter, MSP, SR, FPN (Web-IML)", results, cfg.metric)
          + "Each row removes one component; the difference is webiml minus the variant, paired by seed "
            "(positive: the component helps). The paper's ablation numbers are not recorded here.\n\n"
          + (_table(["component", "variant", "dataset", cfg.metric, "webiml − variant ± SE"], rows) if rows else
             "No ablation variant was trained at this size (`make claims` or `make ablations` trains them).") + "\n")
    fig = effects_figure(bars, f"Ablations: webiml − variant ({cfg.metric}), ± {cfg.k_se:g} SE") if bars else None
    return md, fig


def effects_figure(effects: list[tuple[str, object]], title: str):
    """Horizontal bars of paired effects with ± k·SE whiskers, coloured by verdict."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.35 * len(effects) + 1.2))
    k = Rule().k_se
    for i, (label, e) in enumerate(effects):
        if e.mean is None:
            continue
        ax.barh(i, e.mean, color=COLOURS.get(e.verdict, "tab:gray"), alpha=0.8)
        if e.se:
            ax.errorbar(e.mean, i, xerr=k * e.se, color="k", capsize=3, lw=1)
    ax.set_yticks(range(len(effects)), [f"{l} (n={e.n})" for l, e in effects], fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.invert_yaxis()
    ax.set_title(title + " — green: holds, red: contradicted, grey: not decided", fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------- real benchmarks


def real_benchmarks(results: Results, cfg: ReportConfig) -> str:
    """Every model on every benchmarked dataset beside the trivial answers and the published numbers."""
    models = sorted({RunId.parse(r).name for per in results.benchmark.get("datasets", {}).values() for r in per})
    parts = [_header("Benchmarks: every model beside the trivial answers and the published numbers", results, cfg.metric)
             + f"Images are scored with their long side capped at {results.benchmark.get('max_side')} px. *all-forged* marks "
               "every pixel as manipulated, *empty* none (a model below the all-forged row has not learnt to localize). "
               f"Published numbers ({cfg.metric} at 0.5) come from `published.yaml` with their sources; their splits, "
               "resolutions and training data differ from ours (each row says how the method was trained), so they give the "
               "scale, not a like-for-like comparison.\n"]
    for ds in results.verdict_datasets():
        rows = [[f"`{m}`", "this repository (see REPRODUCTION.md for the training data)", _ms(results.seed_values(m, ds, cfg.metric).values())]
                for m in models if results.seed_values(m, ds, cfg.metric)]
        rows += [[f"*{k}*", "trivial answer", f"*{v:.3f}*"] for k, v in results.trivial(ds, cfg.metric).items()]
        for b in published()["benchmarks"]:
            if ds in b["pixel_f1"]:
                rows.append([f"{b['method']} (published)", b["pixel_f1"][ds]["protocol"], f"{b['pixel_f1'][ds]['value']:.3f}"])
        n = next(iter(results.benchmark["datasets"][ds].values()), {}).get("n_tampered") if ds in results.datasets() else \
            sum(next(iter(results.benchmark["datasets"][d].values()), {}).get("n_tampered") or 0 for d in results.real_datasets())
        parts.append(f"## {ds} ({n} tampered images)\n\n" + _table(["model", "trained on", cfg.metric], rows) + "\n")
    sources = "\n".join(f"- {b['method']}: {b['source']}" for b in published()["benchmarks"])
    return "\n".join(parts) + "\nSources of the published numbers:\n\n" + sources + "\n"


def steps_figure(results: Results, steps_rows: list[dict], cfg: ReportConfig):
    """Per steps dataset (one row each), left: each model claim's paired effect (± k·SE) against
    the share of training steps; right: each model's score (mean ± std over seeds) against it, with
    the all-forged answer."""
    import matplotlib.pyplot as plt

    sets = [ds for ds in results.steps if any(r["dataset"] == ds for r in steps_rows)]
    if not sets:
        return None
    fig, axes = plt.subplots(len(sets), 2, figsize=(12, 4.2 * len(sets)), squeeze=False)
    for (a, b), ds in zip(axes, sets):
        for r in (r for r in steps_rows if r["dataset"] == ds):
            a.errorbar(r["share"], [e["mean"] for e in r["effects"]], yerr=[cfg.k_se * (e["se"] or 0.0) for e in r["effects"]],
                       marker="o", capsize=3, label=f"{r['claim']} {r['part']} ({r['trend']})")
        a.axhline(0, color="k", lw=0.8)
        a.set_xlabel("share of the training steps")
        a.set_ylabel(f"paired effect ({cfg.metric})")
        a.set_title(f"Claims on {ds}: effect ± {cfg.k_se:g} SE vs training length", fontsize=9)
        a.legend(fontsize=6)
        for model in sorted({RunId.parse(run).name for run in results.steps[ds]["runs"]}):
            curve = results.step_values(model, ds, cfg.metric)
            x = list(curve)
            b.errorbar([s / x[-1] for s in x], [np.mean(list(v.values())) for v in curve.values()],
                       yerr=[np.std(list(v.values()), ddof=1) if len(v) > 1 else 0.0 for v in curve.values()], marker="o", capsize=2, label=model)
        triv = (results.steps[ds].get("trivial") or {}).get("all-forged", {}).get(cfg.metric)
        if triv is not None:
            b.axhline(triv, ls="--", color="grey", label="all-forged (trivial)")
        b.set_xlabel("share of the training steps")
        b.set_ylabel(cfg.metric)
        b.set_title(f"Each model on {ds} ({results.steps[ds].get('n_images')} tampered images; mean ± std over seeds)", fontsize=9)
        b.legend(fontsize=6)
    fig.tight_layout()
    return fig


# -------------------------------------------------------------------------------------- BoxPromptIML


def supervision(results: Results, cfg: ReportConfig) -> tuple[str, object]:
    import matplotlib.pyplot as plt

    pub = published_f1("BoxPromptIML")
    rows = [[ds] + [_ms(results.seed_values(m, ds, cfg.metric).values()) for m in SUPERVISION]
            + [f"{pub[ds]['value']:.3f} ({pub[ds]['protocol']})" if ds in pub else "–"] for ds in results.verdict_datasets()]
    md = (_header("Supervision: box vs full masks, filled boxes and image-level labels (BoxPromptIML)", results, cfg.metric)
          + "Paper (pixel F1 of the box-supervised student, SAM teacher): "
          + ", ".join(f"{k} {v['value']}" for k, v in pub.items()) + ".\n\n"
          + _table(["dataset", *(f"{m}: {w}" for m, w in SUPERVISION.items()), "paper: boxprompt"], rows) + "\n")
    ds_list = results.datasets()
    fig, ax = plt.subplots(figsize=(2 + 1.8 * max(1, len(ds_list)), 3.6))
    width = 0.8 / len(SUPERVISION)
    for i, m in enumerate(SUPERVISION):
        vals = [list(results.seed_values(m, ds, cfg.metric).values()) for ds in ds_list]
        means = [np.mean(v) if v else math.nan for v in vals]
        sds = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in vals]
        ax.bar(np.arange(len(ds_list)) + (i - (len(SUPERVISION) - 1) / 2) * width, means, width, yerr=sds, capsize=2, label=m)
    ax.set_xticks(range(len(ds_list)), ds_list)
    ax.set_ylabel(cfg.metric)
    ax.set_title("Supervision: box vs full vs filled box vs image-level (mean ± std over seeds)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return md, fig


def memory_gate(results: Results, cfg: ReportConfig) -> str:
    rows = []
    for v, what in FUSION.items():
        for ds in results.verdict_datasets():
            vals = results.seed_values(v, ds, cfg.metric)
            rows.append([what, v, ds, _ms(vals.values()), _delta(results, "boxprompt", v, ds, cfg.metric, cfg.rule) if vals else "not trained at this size"])
    return (_header("Memory and gate ablations (BoxPromptIML)", results, cfg.metric)
            + "The difference is boxprompt minus the student without the module, paired by seed.\n\n"
            + _table(["module", "variant", "dataset", cfg.metric, "boxprompt − variant ± SE"], rows) + "\n")


def costs(results: Results, cfg: ReportConfig, student: str = "boxprompt") -> dict:
    """Parameters, GFLOPs and CPU latency of the student (at 224²) and of the SAM teacher's image encoder at its input
    size: GFLOPs counted on the meta device (no memory, no time), latency with random weights (same cost as trained)."""
    import torch
    from segment_anything import sam_model_registry

    from ..infer import load_model
    from ..models.profile import gflops, median_seconds, n_parameters
    out = {}
    seeds = results.seeds(student)
    if seeds:
        m = load_model(str(RunId(student, seeds[0])), results.root).model
        x = torch.rand(1, 3, 224, 224)
        with torch.no_grad():
            out[student] = {"parameters": n_parameters(m), "gflops": round(gflops(m, 224), 3), "side": 224,
                            "latency_ms": 1000 * median_seconds(lambda: m(x), cfg.latency_runs)}
    with torch.device("meta"):
        enc = sam_model_registry[cfg.teacher]().image_encoder
        flops = gflops(enc, cfg.teacher_side)
    out["teacher"] = {"name": f"SAM {cfg.teacher} image encoder", "parameters": n_parameters(enc), "gflops": round(flops, 1),
                      "side": cfg.teacher_side, "latency_ms": None}
    if cfg.teacher_latency_runs:
        torch.manual_seed(0)
        enc = sam_model_registry[cfg.teacher]().image_encoder.eval()
        x = torch.rand(1, 3, cfg.teacher_side, cfg.teacher_side)
        with torch.no_grad():
            out["teacher"]["latency_ms"] = 1000 * median_seconds(lambda: enc(x), cfg.teacher_latency_runs, warmup=0)
    return out


def cost_table(results: Results, costs_: dict) -> str:
    pub = published()["boxprompt"]["student"]
    rows = [[n, f"{c['parameters'] / 1e6:.2f}", f"{c['gflops']:.2f}", f"{c['side']}²", "not measured" if c["latency_ms"] is None else f"{c['latency_ms']:.0f}"]
            for n, c in costs_.items()]
    pm = results.metrics.get("train_boxprompt", {}).get("pseudo_masks", {})
    if pm.get("teacher_seconds") and pm.get("n_images"):
        rows.append([f"{pm.get('teacher_name')} teacher (this run's pseudo-labeller)", "–", "–", "image size",
                     f"{1000 * pm['teacher_seconds'] / pm['n_images']:.0f} per image"])
    return (f"# Parameters, GFLOPs and latency of student and teacher (BoxPromptIML)\n\nOurs: size `{results.size}`; latency is "
            "the median CPU wall time of one forward pass on the report stage's machine (see REPRODUCTION.md), SAM with random "
            f"weights (same cost as trained). Paper: student {pub['parameters_m']} M parameters, {pub['gflops_224']} GFLOPs at 224².\n\n"
            + _table(["model", "parameters (M)", "GFLOPs", "input", "latency (ms)"], rows) + "\n")


def annotation_cost(results: Results) -> tuple[str, object]:
    import matplotlib.pyplot as plt

    sec = published()["boxprompt"]["annotation_seconds"]
    pm = results.metrics.get("train_boxprompt", {}).get("pseudo_masks", {})
    quality = {"box (filled)": (pm.get("box") or {}).get("iou"), f"box → {pm.get('teacher_name', 'teacher')}": (pm.get("teacher") or {}).get("iou"),
               "pixel mask": 1.0}
    cost = {"box (filled)": sec["box"], f"box → {pm.get('teacher_name', 'teacher')}": sec["box"], "pixel mask": sec["mask"]}
    rows = [[k, f"{cost[k]:g} s (paper)", "–" if v is None else f"{v:.3f}"] for k, v in quality.items()]
    md = (f"# Annotation cost: a box in about {sec['box']} s vs a pixel mask in about {sec['mask'] / 60:.0f} min (BoxPromptIML)\n\n"
          f"Cost per image from the paper; quality of our simulated boxes and their pseudo-masks against the truth "
          f"(IoU over {(pm.get('teacher') or {}).get('n', 0)} tampered training images, size `{results.size}`).\n\n"
          + _table(["label", "annotation time", "IoU with the truth mask"], rows) + "\n")
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for k, v in quality.items():
        if v is not None:
            ax.scatter(cost[k], v, s=40)
            ax.annotate(k, (cost[k], v), textcoords="offset points", xytext=(5, -10), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("annotation time per image (s, paper)")
    ax.set_ylabel("IoU with the truth mask (ours)")
    ax.set_ylim(0, 1.08)
    ax.set_title("Annotation cost vs label quality", fontsize=9)
    fig.tight_layout()
    return md, fig


# ------------------------------------------------------------------------------------------ writing


def write_items(results: Results, costs_: dict, claim_rows: list[dict], out: str | Path, cfg: ReportConfig = ReportConfig(),
                steps_rows: list[dict] | None = None) -> dict[str, str]:
    """Write every item to ``out``; returns ``{file: title}`` (also written as ``out/README.md``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items: dict[str, str] = {}

    def text(name: str, md: str) -> None:
        (out / name).write_text(md)
        items[name] = md.splitlines()[0].lstrip("# ")

    def figure(name: str, fig, title: str) -> None:
        if fig is not None:
            io.save_figure(fig, out / name)
            items[name] = title

    md, fig = annotation_quality(results)
    text("webiml_annotation_quality.md", md)
    figure("webiml_annotation_quality.png", fig, "Annotation quality per category (figure)")
    figure("webiml_qes.png", qes_figure(results, results.metrics["filter"]["dataset"]["threshold"]), "QES vs true IoU, and the threshold trade-off")
    text("webiml_web_supervision.md", web_supervision(results, cfg))
    md, fig = ablations(results, cfg)
    text("webiml_ablations.md", md)
    figure("webiml_ablations.png", fig, "Ablations: paired effects with their spread")
    if results.benchmark.get("robustness"):
        fig = B.robustness_figure(results.benchmark, cfg.metric)
        fig.suptitle("Robustness to JPEG, resizing, blur and noise (seed " + "/".join(
            sorted({r.partition('@')[2] for per in results.benchmark['robustness'].values() for r in per})) + ")", fontsize=9)
        fig.tight_layout()
        figure("webiml_robustness.png", fig, "Robustness curves")
    for ds in results.datasets():
        src = results.root / "reports/figures/benchmark" / f"{ds}_examples.png"
        if src.is_file():
            shutil.copyfile(src, out / f"qualitative_{ds}.png")
            items[f"qualitative_{ds}.png"] = f"Qualitative results on {ds} (image, truth, each model)"
    md, fig = supervision(results, cfg)
    text("boxprompt_supervision.md", md)
    figure("boxprompt_supervision.png", fig, "Supervision table (figure)")
    text("boxprompt_memory_gate.md", memory_gate(results, cfg))
    text("boxprompt_cost.md", cost_table(results, costs_))
    for ds in results.datasets():
        fig = B.f1_flops_figure(results.benchmark, results.efficiency, ds, cfg.metric)
        figure(f"boxprompt_f1_vs_gflops_{ds}.png", fig, f"F1 vs GFLOPs on {ds}")
    md, fig = annotation_cost(results)
    text("boxprompt_annotation_cost.md", md)
    figure("boxprompt_annotation_cost.png", fig, "Annotation cost vs label quality")
    text("real_benchmarks.md", real_benchmarks(results, cfg))
    figure("effect_vs_steps.png", steps_figure(results, steps_rows or [], cfg), "Effects and scores against the training length")
    effects = [(f"{r['claim']} {r['part']} · {r['dataset']}", _as_effect(r)) for r in claim_rows if r["unit"] != "GFLOPs (counted)"]
    figure("claims.png", effects_figure(effects, "Claims: paired effects"), "Claims C1–C7: paired effects with ± 2 SE")
    index = [f"# The papers' items at size `{results.size}`", "", "Generated by the report stage; see ../REPRODUCTION.md for the verdicts.", ""]
    index += [f"- [{title}]({name})" for name, title in items.items()]
    (out / "README.md").write_text("\n".join(index) + "\n")
    return items


def _as_effect(row: dict):
    from .verdict import Effect

    return Effect(row["n"], row["mean"], row["se"], row["verdict"], tuple(row["values"]))
