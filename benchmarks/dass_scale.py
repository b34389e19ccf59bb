"""Does DASS gain from enlarging small images (``train_annotators.pool.min_side``)? README numbers.

The choice was made on a *validation* corpus (collect's recipe with seed 1: other edits on the
same held-out photos), not on the default run's test corpus (seed 0), and decided beforehand:
keep ``min_side`` only if its mean SPG IoU over two training seeds beats the plain native scale's
by at least 0.02. Each model is trained as in train_annotators (params.yaml), on the pool of the
default seed; scores are mean IoU over the corpus's SPG pairs, and over those whose edit covers
less than 1% of the image.

About 16 minutes on 2 CPU threads. Usage: python benchmarks/dass_scale.py [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

from evidence import ROOT, make_corpus, train_dass
from webiml import io
from webiml.caaa.annotate import load_pair
from webiml.caaa.annotator import _spg_view, dass_native
from webiml.evaluate.metrics import pixel_scores


def score(model, corpus: Path) -> dict:
    recs = {r.id: r for r in io.read_pairs(corpus / "pairs")}
    ious, small = [], []
    for t in io.read_jsonl(corpus / "audit" / "audit.jsonl"):
        if t["category"] != "spg" or t["id"] not in recs:
            continue
        pair = load_pair(corpus / "pairs", recs[t["id"]])
        truth = io.read_mask(corpus / "audit" / t["mask"]) > 0
        iou = pixel_scores(dass_native(model, pair.forged, _spg_view(pair), tta=True), truth, threshold=0.5)["iou"]
        ious.append(iou)
        if truth.mean() < 0.01:
            small.append(iou)
    return {"n": len(ious), "spg_iou": round(float(np.mean(ious)), 4),
            "n_small": len(small), "small_iou": round(float(np.mean(small)), 4) if small else None}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = yaml.safe_load(Path(args.params).read_text())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = make_corpus(dict(params, seed=1), Path(tmp), plain=False)  # validation corpus
        for min_side in (0, int(params["train_annotators"]["pool"].get("min_side", 512)) or 512):
            for seed in args.seeds:
                model, secs = train_dass(params, False, seed, pool_seed=int(params["seed"]), min_side=min_side)
                row = {"min_side": min_side, "seed": seed, "train_seconds": round(secs, 1), **score(model, corpus)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    for m in sorted({r["min_side"] for r in rows}):
        print(f"min_side {m}: mean SPG IoU {np.mean([r['spg_iou'] for r in rows if r['min_side'] == m]):.3f}")
    if args.out:
        io.write_json(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
