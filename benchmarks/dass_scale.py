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

from evidence import ROOT, make_corpus, score_spg, train_dass
from webiml import io


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
        enlarged = int(params["train_annotators"]["pool"].get("min_side") or 512)
        for min_side in (0, enlarged):
            for seed in args.seeds:
                model, secs = train_dass(params, False, seed, pool_seed=int(params["seed"]), min_side=min_side)
                row = {"min_side": min_side, "seed": seed, "train_seconds": round(secs, 1), **score_spg(model, corpus)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    for m in sorted({r["min_side"] for r in rows}):
        print(f"min_side {m}: mean SPG IoU {np.mean([r['spg_iou'] for r in rows if r['min_side'] == m]):.3f}")
    if args.out:
        io.write_json(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
