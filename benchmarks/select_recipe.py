"""Choose the default training recipe on NIST16's validation part, never on a test split.

Trains `webiml` and the box-supervised student `boxprompt` with each candidate recipe (overrides of
params.yaml's `train_webiml` / `train_boxprompt` sections) on the default run's data — the synthetic
sources, the web dataset of the filter stage and NIST16's `train` part — and scores them on NIST16's
`val` part (whole near-duplicate groups carved from NIST16's training part, see
`webiml.evaluate.prepare.carve_validation`) beside the all-forged answer. Writes one JSON row per
candidate and seed, and a markdown table of the means.

Run from the repository after `dvc repro real_data filter` (it reads `data/realsets` and `data/dataset`):

    python benchmarks/select_recipe.py benchmarks/recipes.yaml --out reports/recipe [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from webiml import io
from webiml.evaluate import benchmark as B
from webiml.evaluate.realsets import index_path
from webiml.infer import load_model
from webiml.stage import workspace_params
from webiml.train_boxprompt import prepare_boxprompt_data, train_student
from webiml.train_webiml import prepare_webiml, train_webiml
from webiml.workspace import overlay


def _score(model_dir: Path, val: Path, max_side: int) -> dict:
    s, _ = B.evaluate_model(load_model(model_dir / "model.pt"), val, max_side=max_side, progress=False)
    return {k: s.get(k) for k in ("pixel_f1", "pixel_iou", "pixel_precision", "pixel_recall", "pixel_auc")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipes", help="YAML: {candidate name: {train_webiml: {...}, train_boxprompt: {...}}} (overrides)")
    ap.add_argument("--out", default="reports/recipe")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--models", nargs="+", default=["webiml", "boxprompt"], choices=["webiml", "boxprompt"])
    ap.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    ap.add_argument("--variant", default="webiml", help="the Web-IML variant trained (webiml-noweb: no web dataset needed)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    params = workspace_params(".")
    val, real = index_path("data/realsets", "nist16", "val"), index_path("data/realsets", "nist16", "train")
    if not (val.is_file() and real.is_file()):
        raise SystemExit("NIST16's val/train indexes are missing: run `dvc repro real_data` with paths.real.nist16 present")
    max_side = params["benchmark"]["max_side"]
    out = Path(args.out)
    results_file = out / "results.jsonl"
    done = {(r["candidate"], r["model"], r["seed"]) for r in io.read_jsonl(results_file)} if results_file.is_file() else set()
    done = {(c, "webiml" if m == args.variant else m, s) for c, m, s in done}
    recipes = yaml.safe_load(Path(args.recipes).read_text())
    trivial = B.evaluate_model(B.trivial("all-forged"), val, progress=False)[0]["pixel_f1"]
    for name, over in recipes.items():
        if args.only and name not in args.only:
            continue
        p = overlay(params, over or {})
        pool = None
        for seed in args.seeds:
            for model in args.models:
                if (name, model, seed) in done:
                    continue
                run_dir = out / name / f"{model}-seed{seed}"
                t0 = time.perf_counter()
                if model == "webiml":
                    run = prepare_webiml(args.variant, p["train_webiml"], seed, web_dataset="data/dataset/index.json",
                                         data_seed=p["seed"], real_dataset=real)
                    summary = train_webiml(run, run_dir, progress=False)
                else:
                    pool = pool or prepare_boxprompt_data(p["train_boxprompt"], data_seed=p["seed"], progress=False, real_index=real)
                    summary = train_student("boxprompt", pool, p["train_boxprompt"], seed, run_dir, progress=False)
                extra = {"teacher_by_source": pool.report["teacher_by_source"]} if model == "boxprompt" else {}
                row = {"candidate": name, "model": args.variant if model == "webiml" else model, "seed": seed, "overrides": over, **extra,
                       **_score(run_dir, val, max_side),
                       "all_forged_f1": trivial, "train_seconds": summary["seconds"], "seconds": round(time.perf_counter() - t0, 1)}
                results_file.parent.mkdir(parents=True, exist_ok=True)
                with open(results_file, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps({k: row[k] for k in ("candidate", "model", "seed", "pixel_f1", "pixel_precision", "pixel_recall", "seconds")}))
    rows = io.read_jsonl(results_file)
    lines = [f"NIST16 val ({B.evaluate_model(B.trivial('all-forged'), val, progress=False)[0]['n_tampered']} images), "
             f"pixel F1 at 0.5, long side capped at {max_side}; all-forged answer: {trivial:.3f}.", "",
             "| candidate | overrides of params.yaml | model | seeds | pixel F1 | precision | recall | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for key in dict.fromkeys((r["candidate"], r["model"]) for r in rows):
        rs = [r for r in rows if (r["candidate"], r["model"]) == key]
        f1 = [r["pixel_f1"] for r in rs]
        over = json.dumps(rs[0]["overrides"] or {}, separators=(",", ":")).replace("|", "\\|")
        lines.append(f"| {key[0]} | `{over}` | {key[1]} | {len(rs)} | {np.mean(f1):.3f}" + (f" ± {np.std(f1, ddof=1):.3f}" if len(f1) > 1 else "")
                     + f" | {np.mean([r['pixel_precision'] for r in rs]):.3f} | {np.mean([r['pixel_recall'] for r in rs]):.3f} "
                     f"| {np.mean([r['train_seconds'] for r in rs]):.0f} |")
    (out / "README.md").write_text("# Recipe selection on NIST16 val\n\nGenerated by `benchmarks/select_recipe.py` from "
                                   f"`{results_file}`.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
