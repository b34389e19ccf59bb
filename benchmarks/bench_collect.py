"""Speed and memory of the collect stage (numbers for the README).

Each case runs in a fresh subprocess so peak-memory counters start from zero. Peak memory is
reported as main-process peak + workers × worker peak (an upper bound on the total).
Usage: python benchmarks/bench_collect.py [--workers 2] [--out reports/bench/collect.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / ".." / "shared" / "data" / "web_pairs"

CASE = """
import json, sys
from webiml import collect as C
kind, n, workers, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = C.CollectConfig(workers=workers)
if kind == "synthetic":
    cands = C.synthetic_candidates(n)
else:
    cands = C.pairs_csv_candidates(sys.argv[5], sys.argv[6])
r = C.collect(cands, out + "/pairs", cfg, audit=out + "/audit", progress=False)
print(json.dumps(r))
"""


def run(kind: str, n: int, workers: int, *extra: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        p = subprocess.run([sys.executable, "-c", CASE, kind, str(n), str(workers), tmp, *extra],
                           capture_output=True, text=True, check=True)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    peak = r["main_peak_rss_mb"] + workers * r["worker_peak_rss_mb"]
    return {"case": f"{kind} ({r['n_candidates']} pairs)", "pairs": r["n_candidates"], "accepted": r["n_accepted"],
            "seconds": r["seconds_total"], "pairs_per_s": r["pairs_per_second"],
            "main_peak_mb": r["main_peak_rss_mb"], "worker_peak_mb": r["worker_peak_rss_mb"], "peak_total_mb_upper": round(peak, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench" / "collect.json"))
    args = ap.parse_args()
    rows = []
    if (WEB / "samplePairs.csv").exists():
        rows.append(run("pairs-csv", 0, args.workers, str(WEB / "samplePairs.csv"), str(WEB)))
    else:
        print(f"skipping web pairs: {WEB} not found", file=sys.stderr)
    for n in (50, 200):
        rows.append(run("synthetic", n, args.workers))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
