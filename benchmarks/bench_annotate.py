"""Annotation throughput of CAAAv2 at mini size on 2 CPU threads (numbers for the README).

Needs the default pipeline's outputs: data/collect (stage collect) and models/annotators (stage
train_annotators). Usage: python benchmarks/bench_annotate.py [--limit 100] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from webiml.caaa.annotate import annotate_corpus, build_annotator

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", default=str(ROOT / "data" / "collect"))
    ap.add_argument("--models", default=str(ROOT / "models" / "annotators"))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for method in ("caaa", "unified", "naive"):
        kw = {} if method == "naive" else {"models_dir": args.models}
        ann = build_annotator(method, **kw)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            r = annotate_corpus(Path(args.pairs), ann, Path(tmp) / method, batch_size=args.batch_size,
                                limit=args.limit, progress=False)
            wall = time.perf_counter() - t0
        rows.append({"method": method, "pairs": r["n_done"], "seconds": round(wall, 1), "pairs_per_s": round(r["n_done"] / wall, 2)})
    print("| method | pairs | seconds | pairs/s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['pairs']} | {r['seconds']} | {r['pairs_per_s']} |")
    out = ROOT / "reports" / "bench" / "annotate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
