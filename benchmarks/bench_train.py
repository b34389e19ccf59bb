"""Training speed of every trainer on this machine's CPU at the default run's shapes, by layout
(NCHW vs channels-last) and precision (fp32 vs bf16): images/s and the share of step time spent
building batches (numbers for the README; ``webiml.device`` explains the channels-last default).

Runs ``benchmarks/gpu_check.py --size mini --device cpu`` once per combination and writes one table.

Usage: python benchmarks/bench_train.py [out.json] [--steps 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import gpu_check  # noqa: E402

DEFAULT_OUT = "reports/metrics/train_speed.json"
COMBINATIONS = (("NCHW", "fp32"), ("channels-last", "fp32"), ("channels-last", "bf16"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=DEFAULT_OUT)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for layout, precision in COMBINATIONS:
            out = Path(tmp) / f"{layout}-{precision}.json"
            flags = ["--nchw"] if layout == "NCHW" else []
            gpu_check.main(["--device", "cpu", "--size", "mini", "--steps", str(args.steps), "--runs", "3",
                            "--precision", precision, "--out", str(out), *flags])
            rows[f"{layout} {precision}"] = json.loads(out.read_text())["trainers"]
    table = {t: {combo: {k: r[t][k] for k in ("images_per_s", "data_share")} for combo, r in rows.items()} for t in gpu_check.TRAINERS}
    report = {"machine": {"cpu_threads": args.threads, "torch": torch.__version__}, "steps": args.steps, "trainers": table}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print("| trainer | " + " | ".join(f"{c} img/s" for c in rows) + " | data share |")
    print("|---|" + "---|" * (len(rows) + 1))
    for t, per in table.items():
        print(f"| {t} | " + " | ".join(f"{v['images_per_s']}" for v in per.values()) + f" | {per['channels-last fp32']['data_share']:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
