"""How well does the shared-content test separate real pairs from mismatched ones?

On ../shared/data/web_pairs: the fraction of the real pairs judged to share content (recall), and
the fraction of deliberately mismatched pairs (forgery of pair i with the original of pair i+7 and
i+13) judged to share content (false accepts). Usage: python benchmarks/bench_register.py
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from webiml import io
from webiml.register import RegisterConfig, register

WEB = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "web_pairs"


def main() -> int:
    if not (WEB / "samplePairs.csv").exists():
        print(f"{WEB} not found: nothing to measure", file=sys.stderr)
        return 0
    rows = [r for r in csv.reader(open(WEB / "samplePairs.csv")) if len(r) >= 2]
    cache: dict[str, object] = {}

    def load(p: str):
        if p not in cache:
            try:
                cache[p] = io.read_image(WEB / p)[0]
            except io.Rejected:
                cache[p] = None
        return cache[p]

    cfg = RegisterConfig()
    real = [(f, a) for f, a in rows]
    mismatched = [(rows[i][0], rows[(i + k) % len(rows)][1]) for k in (7, 13) for i in range(len(rows))]
    mismatched = [(f, a) for f, a in mismatched if Path(a).name.split("_", 1)[1] != dict(rows)[f].split("_", 1)[1]]

    def shared(pairs):
        out = [register(load(f), load(a), cfg).status != "no-shared-content" for f, a in pairs
               if load(f) is not None and load(a) is not None]
        return sum(out), len(out)

    r, n = shared(real)
    fa, m = shared(mismatched)
    print("| pairs | judged to share content |\n|---|---|")
    print(f"| real web pairs | {r}/{n} ({r / n:.0%}) |")
    print(f"| mismatched real pairs | {fa}/{m} ({fa / m:.1%}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
