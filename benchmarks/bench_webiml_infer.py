"""Speed of the Web-IML model on CPU: inference latency and training throughput (numbers for the README).

For the default model (MSP + SR, offline ImageNet Lite0) and each switch-off variant (MSP off, SR
off, plain FPN baseline): parameters, FLOPs (torch FlopCounterMode: 2 per multiply-add) and the
median latency of a batch-1 forward (eval, no grad) at 256² and 512², and the training throughput
(forward + OHEM loss + backward + AdamW step, batch 8 at 256²) in images/s. The budget is 300 ms (the Web-IML issue)
for the default model at 512² on 2 threads.

Usage: python benchmarks/bench_webiml_infer.py [out.json] [--threads 2] [--runs 10] [--train-steps 5]
"""

from __future__ import annotations

import argparse
import sys

import torch

from webiml import io
from webiml.models.profile import median_seconds, profile
from webiml.models.webiml import WebIML, WebIMLConfig

DEFAULT_OUT = "reports/metrics/webiml_speed.json"
BUDGET_MS_512 = 300.0
VARIANTS: dict[str, dict] = {
    "webiml (MSP + SR)": {},
    "MSP off": {"msp": False},
    "SR off": {"sr_passes": 0},
    "FPN baseline": {"decoder": "fpn"},
}



def bench_variant(name: str, overrides: dict, runs: int, train_steps: int, batch: int) -> dict:
    torch.manual_seed(0)
    cfg = WebIMLConfig(**overrides)
    model = WebIML(cfg).eval()
    row: dict = {"model": name, "config": overrides, "passes": model.n_passes, **profile(model, (256, 512))}
    for side in (256, 512):
        x = torch.rand(1, 3, side, side)
        with torch.no_grad():
            row[f"latency_ms_{side}"] = round(1000 * median_seconds(lambda: model(x), runs, warmup=5), 1)

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, 256, 256)
    y = torch.zeros(batch, 1, 256, 256)
    y[:, :, 64:160, 96:200] = 1.0

    def step() -> None:
        loss, _ = model.loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds = median_seconds(step, train_steps, warmup=1)
    row["train_step_s"] = round(seconds, 3)
    row["train_images_per_s"] = round(batch / seconds, 2)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=DEFAULT_OUT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10, help="timed forwards per latency (median)")
    ap.add_argument("--train-steps", type=int, default=5, help="timed training steps (median)")
    ap.add_argument("--batch", type=int, default=8, help="training batch size (256² images)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rows = [bench_variant(name, kw, args.runs, args.train_steps, args.batch) for name, kw in VARIANTS.items()]
    default_ms = rows[0]["latency_ms_512"]
    report = {"threads": args.threads, "runs": args.runs, "train_steps": args.train_steps, "train_batch": args.batch,
              "torch": torch.__version__, "flops": "torch FlopCounterMode (2 per multiply-add)",
              "budget_ms_512": BUDGET_MS_512, "within_budget": default_ms <= BUDGET_MS_512, "models": rows}
    io.write_json(args.out, report)

    print(f"CPU, {args.threads} threads; latency: batch 1, median of {args.runs}; "
          f"training: batch {args.batch} at 256², median of {args.train_steps} steps\n")
    print("| model | passes | params (M) | GFLOPs 256² | GFLOPs 512² | ms 256² | ms 512² | train img/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['passes']} | {r['parameters'] / 1e6:.2f} | {r['gflops_256']:.2f} | {r['gflops_512']:.2f} "
              f"| {r['latency_ms_256']:.0f} | {r['latency_ms_512']:.0f} | {r['train_images_per_s']:.1f} |")
    verdict = "within" if report["within_budget"] else "OVER"
    print(f"\ndefault model at 512²: {default_ms:.0f} ms ({verdict} the {BUDGET_MS_512:.0f} ms budget)")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
