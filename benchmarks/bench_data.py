"""The training data pipeline alone: memory against corpus size, samples/s by DataLoader workers, and
made-per-item against read-from-disk at the paper's image sizes.

- **memory**: for each corpus size (default 1 000 and 20 000 pairs, small images) a fresh process
  builds the CAAAv2 annotator pool and the Web-IML training data (generated sources with that many
  items, plus a web dataset of that many image/mask files on disk), draws the same number of
  batches from each across the whole index range, and reports its peak RSS. Generated items are
  kept up to ``--cache-mb`` per source, so the peak should not depend on the corpus size.
- **throughput**: samples/s that ``webiml.train.data_loader`` delivers for the default run's
  mixture (params.yaml shapes, no web source) with 0, 1 and 2 workers, its samples made up front
  as in training (what remains per sample: the draw, the crop, the flip and the batch).
- **paper sources**: seconds per sample to make a hand-crafted forgery at 768-1280 px against reading
  the same sample back from disk (JPEG + PNG mask), the choice between generating per item and
  pre-rendering shards.

Usage: python benchmarks/bench_data.py [out.json] [--pairs 1000 20000] [--draws 4000] [--workers 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_OUT = "reports/metrics/data_speed.json"
SMALL = dict(base_side=(96, 128))


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _web_index(folder: Path, n: int) -> Path:
    """``n`` distinct small forged images with masks on disk, as a BenCo index."""
    import cv2

    from webiml import io

    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        mask = np.zeros((48, 64), np.uint8)
        mask[8:24, 10 + i % 30 : 30 + i % 30] = 255
        cv2.imwrite(str(folder / "imgs" / f"{i}.jpg"), img)
        cv2.imwrite(str(folder / "masks" / f"{i}.png"), mask)
        rows.append([str(folder / "imgs" / f"{i}.jpg"), str(folder / "masks" / f"{i}.png")])
    io.write_json(folder / "index.json", rows)
    return folder / "index.json"


def measure_memory(n: int, draws: int, cache_mb: float, work: Path) -> dict:
    """One corpus size, in this process (run it in a fresh one)."""
    import torch

    from webiml.caaa.pool import Pool, PoolConfig, batch
    from webiml.mixture import MixtureConfig, build_mixture
    from webiml.photos import load_photos
    from webiml.train import MixtureDataset

    torch.set_num_threads(1)
    base = _peak_rss_mb()
    t0 = time.perf_counter()
    index = _web_index(work / f"web{n}", n)
    pool = Pool(load_photos("train"), PoolConfig(n_pairs=n, size=64, max_side=128, min_side=64, crop=48, cache_mb=cache_mb, **SMALL), seed=0)
    rng = np.random.default_rng(1)
    for _ in range(draws // 8):
        batch(pool, rng.integers(0, n, 8), rng, native=True)
    pool_peak = _peak_rss_mb()
    mixture, _ = build_mixture(MixtureConfig(handcrafted=n, jitter=n // 2, authentic=n // 4, cache_mb=cache_mb, **SMALL), seed=0,
                               web_index=index)
    ds = MixtureDataset(mixture, 64, seed=0)
    for k in range(draws):
        ds[k]
    return {"pairs": n, "draws": draws, "cache_mb": cache_mb, "rss_after_imports_mb": base, "peak_rss_after_pool_mb": pool_peak,
            "peak_rss_mb": _peak_rss_mb(), "mixture": mixture.describe(), "seconds": round(time.perf_counter() - t0, 1)}


def throughput(workers: int, samples: int) -> dict:
    import torch
    import yaml

    from webiml.config import from_dict
    from webiml.mixture import MixtureConfig, build_mixture
    from webiml.train import TrainConfig, data_loader

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["train_webiml"]
    torch.set_num_threads(2)
    mixture, _ = build_mixture(from_dict(MixtureConfig, params["mixture"], "train_webiml.mixture"), seed=0)
    cfg = from_dict(TrainConfig, {**params["train"], "num_workers": workers, "steps": samples // params["train"]["batch_size"]},
                    "train_webiml.train")
    t0 = time.perf_counter()
    n = sum(len(x) for x, _ in data_loader(mixture, cfg))
    s = time.perf_counter() - t0
    return {"workers": workers, "samples": n, "seconds": round(s, 2), "samples_per_s": round(n / s, 1)}


def paper_sources(n: int, work: Path) -> dict:
    """Make ``n`` paper-size hand-crafted samples, write them, and read them back."""
    import cv2

    from webiml import io
    from webiml.photos import load_photos
    from webiml.samples import handcrafted_sample

    photos = load_photos("train")
    t0 = time.perf_counter()
    made = [handcrafted_sample(np.random.default_rng([0, 1, i]), photos, (768, 1280)) for i in range(n)]
    make_s = (time.perf_counter() - t0) / n
    (work / "shard").mkdir(exist_ok=True)
    for i, (rgb, mask) in enumerate(made):
        cv2.imwrite(str(work / "shard" / f"{i}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(work / "shard" / f"{i}.png"), (mask > 0.5).astype(np.uint8) * 255)
    t0 = time.perf_counter()
    for i in range(n):
        rgb, _ = io.read_image(work / "shard" / f"{i}.jpg")
        io.read_mask(work / "shard" / f"{i}.png", size=(rgb.shape[1], rgb.shape[0]))
    read_s = (time.perf_counter() - t0) / n
    return {"samples": n, "long_side": [768, 1280], "make_ms": round(1000 * make_s, 1), "read_ms": round(1000 * read_s, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=DEFAULT_OUT)
    ap.add_argument("--pairs", type=int, nargs="+", default=[1000, 20000])
    ap.add_argument("--draws", type=int, default=4000, help="samples drawn from each source per corpus size")
    ap.add_argument("--cache-mb", type=float, default=16, help="per generated source: small enough that both corpus sizes fill it")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--samples", type=int, default=4000, help="samples per throughput run")
    ap.add_argument("--paper-samples", type=int, default=24)
    ap.add_argument("--memory-one", type=int, help=argparse.SUPPRESS)  # internal: one corpus size, printed as JSON
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_one is not None:
        print(json.dumps(measure_memory(args.memory_one, args.draws, args.cache_mb, Path(args.work))))
        return 0
    report: dict = {"memory": [], "throughput": [], "machine": {"cpus": len(__import__("os").sched_getaffinity(0))}}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.pairs:
            out = subprocess.run([sys.executable, __file__, "--memory-one", str(n), "--draws", str(args.draws),
                                  "--cache-mb", str(args.cache_mb), "--work", tmp], check=True, capture_output=True, text=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            report["memory"].append(row)
            print(f"memory, {n} pairs: peak RSS {row['peak_rss_mb']} MB (after the pool {row['peak_rss_after_pool_mb']} MB, "
                  f"{row['seconds']} s)", flush=True)
        first, last = report["memory"][0]["peak_rss_mb"], report["memory"][-1]["peak_rss_mb"]
        report["peak_rss_growth"] = round(last / first - 1, 4)
        for w in args.workers:
            report["throughput"].append(throughput(w, args.samples))
            print(f"throughput: {report['throughput'][-1]}", flush=True)
        report["paper_sources"] = paper_sources(args.paper_samples, Path(tmp))
        print(f"paper-size sources: {report['paper_sources']}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"peak RSS {first} MB at {args.pairs[0]} pairs, {last} MB at {args.pairs[-1]} pairs: "
          f"{100 * report['peak_rss_growth']:+.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
