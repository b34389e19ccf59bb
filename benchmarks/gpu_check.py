"""GPU check: every trainer and every device inference path at paper shapes, through the package's own
functions, a few hundred steps each; writes images/s, peak GPU memory and the share of step time
spent waiting for batches to a JSON file (the CAAAv2 loop builds them in the training process; the
engine's DataLoader prefetches them in worker processes).

Trainers, all through ``webiml.train.fit`` and its DataLoader (``--workers``): the pair classifier,
DASS, Corr-DINO-lite and the unified baseline (a pool at the paper's 768-1280 px with 384² crops),
Web-IML (width 128, 512² crops, batch 16) and the BoxPromptIML student (512², batch 16). Inference: DASS at native
scale with flip TTA, Corr-DINO-lite and the classifier on batches, Web-IML and the student on 1024²
images (``webiml.infer.predict_prob``), and the SAM vit_b teacher with RANDOM weights (latency only).
Models are freshly initialised: the numbers are speed and memory, never accuracy.

Runs from a checkout without DVC or Papermill: ``PYTHONPATH=src python benchmarks/gpu_check.py``
(``make gpu-check``). ``--size mini --device cpu`` measures the default run's shapes on a CPU
(``--nchw`` for the layout comparison); ``--size quick`` shrinks every shape and step count so that
the script itself can be tested, and its numbers mean nothing.

Usage: python benchmarks/gpu_check.py [--out FILE] [--device auto] [--precision bf16] [--steps 200]
       [--size paper|mini|quick] [--nchw]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import webiml.train_annotators as annotators
import webiml.train as engine
from webiml.caaa.pool import PairStream, PoolConfig, make_pool
from webiml.device import resolve

DEFAULT_OUT = "reports/metrics/gpu_check.json"
TRAINERS = ("classifier", "dass", "corr", "unified", "webiml", "boxprompt")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None


def _row(summary: dict, device: torch.device, **extra) -> dict:
    """A trainer's row from the summary of ``webiml.train.fit``."""
    return {"steps": summary["steps"], "batch_size": summary["train"]["batch_size"], "seconds": summary["seconds"],
            "images_per_s": summary["images_per_second"], "data_share": summary["data_share"], "peak_gpu_gb": _peak_gb(device), **extra}


SIZES = {
    # tiny: tests the script on a CPU, its numbers mean nothing
    "quick": {"pool": dict(n_pairs=8, size=64, base_side=(96, 128), max_side=128, min_side=96, crop=64),
              "classifier": (64, 4), "caaa_batch": 4, "webiml": dict(width=16, size=64, batch=4, side=(96, 128), n=6),
              "student": dict(size=64, batch=4, side=(96, 128), n=6), "infer_side": 128, "sam": False},
    # the default run's shapes (params.yaml)
    "mini": {"pool": dict(n_pairs=48, size=256, base_side=(320, 512), max_side=768, min_side=512, crop=192),
             "classifier": (128, 16), "caaa_batch": 8, "webiml": dict(width=64, size=256, batch=8, side=(320, 512), n=48),
             "student": dict(size=224, batch=8, side=(320, 512), n=48), "infer_side": 512, "sam": False},
    # the paper's shapes (params/paper.yaml)
    "paper": {"pool": dict(n_pairs=48, size=512, base_side=(768, 1280), max_side=768, min_side=512, crop=384),
              "classifier": (256, 32), "caaa_batch": 16, "webiml": dict(width=128, size=512, batch=16, side=(768, 1280), n=48),
              "student": dict(size=512, batch=16, side=(768, 1280), n=48), "infer_side": 1024, "sam": True},
}


def check_caaa(pool, device, precision: str, steps: int, shp: dict, out: Path, channels_last: bool, workers: int = 0) -> tuple[dict, dict]:
    """The four CAAAv2 trainers through the shared engine; returns (rows, trained models)."""
    from webiml.caaa.models import DASS, ClassifierConfig, CorrConfig, CorrDINO, PairClassifier

    pcfg = PoolConfig(**shp["pool"])
    cat = pool.category
    idx = np.arange(len(pool))
    size, cbatch = shp["classifier"]
    jobs = {
        "classifier": (lambda: PairClassifier(ClassifierConfig(size=size, weights="none")), None, idx, cbatch, False),
        "dass": (lambda: DASS(annotators.dass_config(pcfg, weights="none")), annotators.dass_step, idx[cat == 0], shp["caaa_batch"], True),
        "corr": (lambda: CorrDINO(CorrConfig(size=pcfg.size, weights="none")), annotators.corr_step(1024.0), idx[cat == 1], shp["caaa_batch"], False),
        "unified": (lambda: DASS(annotators.dass_config(pcfg, weights="none")), annotators.dass_step, idx, shp["caaa_batch"], True),
    }
    rows, models = {}, {}
    for name, (build, step, indices, batch, native) in jobs.items():
        torch.manual_seed(0)
        model = build()
        if name == "classifier":
            step = annotators.classifier_step(model.cfg.size)
        cfg = engine.TrainConfig(steps=steps, batch_size=batch, warmup=min(20, steps), threads=torch.get_num_threads(), checkpoint_every=10**9,
                                 device=str(device), precision=precision, channels_last=channels_last and name != "corr",
                                 num_workers=workers)
        _reset_peak(device)
        summary = engine.fit(model, PairStream(pool, indices, 0, flip=name != "classifier", native=native), cfg, out / name, model.cfg,
                             step_fn=step, progress=False)
        _sync(device)
        rows[name] = _row(summary, device, precision=precision, num_workers=workers)
        models[name] = model.eval()  # fit left it on the device
        print(f"{name}: {rows[name]}", flush=True)
    return rows, models


def check_engine(device, precision: str, steps: int, shp: dict, out: Path, channels_last: bool, workers: int = 0) -> tuple[dict, dict]:
    """Web-IML and the BoxPromptIML student through the shared engine (its DataLoader with ``workers``)."""
    from webiml.mixture import MixtureConfig, build_mixture
    from webiml.models.boxprompt import BoxPromptConfig, BoxPromptStudent
    from webiml.models.webiml import WebIML, WebIMLConfig
    from webiml.photos import load_photos
    from webiml.samples import ListSource, handcrafted_samples

    rows, models = {}, {}
    w = shp["webiml"]
    mixture, _ = build_mixture(MixtureConfig(handcrafted=w["n"], jitter=w["n"] // 2, authentic=w["n"] // 4, base_side=w["side"]), seed=0)
    s = shp["student"]
    samples = handcrafted_samples(load_photos("train"), s["n"], np.random.default_rng(0), s["side"])
    jobs = {
        "webiml": (lambda: WebIML(WebIMLConfig(width=w["width"], input_size=w["size"], weights="none")), mixture, w),
        "boxprompt": (lambda: BoxPromptStudent(BoxPromptConfig(input_size=s["size"], weights="none")),
                      engine.Mixture({"teacher": ListSource(samples)}), s),
    }
    for name, (build, mix, sh) in jobs.items():
        torch.manual_seed(0)
        model = build()
        cfg = engine.TrainConfig(steps=steps, batch_size=sh["batch"], size=sh["size"], warmup=min(20, steps), threads=torch.get_num_threads(),
                                 checkpoint_every=10**9, device=str(device), precision=precision,
                                 channels_last=channels_last, num_workers=workers)
        _reset_peak(device)
        summary = engine.fit(model, mix, cfg, out / name, model.cfg, progress=False)
        _sync(device)
        rows[name] = _row(summary, device, precision=precision, num_workers=workers)
        models[name] = model.eval()
        print(f"{name}: {rows[name]}", flush=True)
    return rows, models


def _latency(fn, device, runs: int) -> float:
    fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(runs):
        fn()
    _sync(device)
    return round(1000 * (time.perf_counter() - t0) / runs, 2)


@torch.no_grad()
def check_inference(caaa: dict, trained: dict, pool, device, shp: dict, runs: int) -> dict:
    from webiml.caaa.annotator import dass_native
    from webiml.caaa.models import to_tensor
    from webiml.device import place, to
    from webiml.infer import LoadedModel, predict_prob

    rows = {}
    forged, registered, _ = pool[0].native
    place(caaa["dass"], device)
    _reset_peak(device)
    rows["annotate: DASS native + TTA"] = {"ms_per_pair": _latency(lambda: dass_native(caaa["dass"], forged, registered, tta=True), device, runs),
                                           "side": list(forged.shape[:2]), "peak_gpu_gb": _peak_gb(device)}
    for name in ("corr", "classifier"):
        m = place(caaa[name], device)
        s = m.cfg.size
        b = shp["caaa_batch"]
        f = to(torch.stack([to_tensor(pool[i % len(pool)].forged, s) for i in range(b)]), device)
        a = to(torch.stack([to_tensor(pool[i % len(pool)].authentic, s) for i in range(b)]), device)
        _reset_peak(device)
        ms = _latency(lambda: m(f, a), device, runs)
        rows[f"annotate: {name} batch {b}"] = {"ms_per_pair": round(ms / b, 2), "peak_gpu_gb": _peak_gb(device)}
    side = shp["infer_side"]
    rgb = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    for name, model in trained.items():
        lm = LoadedModel(name, place(model, device), Path("-"), {})
        _reset_peak(device)
        rows[f"predict: {name} {side}²"] = {"ms_per_image": _latency(lambda: predict_prob(lm, rgb, max_side=side), device, runs),
                                           "peak_gpu_gb": _peak_gb(device)}
    if shp["sam"]:
        from segment_anything import sam_model_registry

        from webiml.models.teachers import SamTeacher

        with tempfile.TemporaryDirectory() as tmp:
            ckpt = Path(tmp) / "sam_vit_b_random.pth"
            torch.save(sam_model_registry["vit_b"]().state_dict(), ckpt)
            sam = SamTeacher(ckpt, "vit_b", device=str(device))
        box = [(side * 0.3, side * 0.3, side * 0.6, side * 0.6)]
        _reset_peak(device)
        rows["teacher: SAM vit_b (random weights), 1 box"] = {"ms_per_image": _latency(lambda: sam(rgb, box), device, max(1, runs // 2)),
                                                             "peak_gpu_gb": _peak_gb(device)}
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--steps", type=int, default=200, help="training steps per trainer")
    ap.add_argument("--runs", type=int, default=10, help="timed inference calls per path")
    ap.add_argument("--size", default="paper", choices=tuple(SIZES), help="shapes: paper, mini (the default run's) or quick (tests the script)")
    ap.add_argument("--nchw", action="store_true", help="train in the NCHW layout instead of channels-last (for comparison)")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers of Web-IML and the student (default: 8 at paper size, else 0)")
    args = ap.parse_args(argv)
    device = resolve(args.device)
    quick = args.size == "quick"
    steps, runs = (2, 2) if quick else (args.steps, args.runs)
    shp = SIZES[args.size]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    t_start = time.perf_counter()
    from webiml.photos import load_photos

    t0 = time.perf_counter()
    pool = make_pool(load_photos("train"), PoolConfig(**shp["pool"]), seed=0, progress=False)
    pool_seconds = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        workers = args.workers if args.workers is not None else (8 if args.size == "paper" else 0)
        caaa_rows, caaa_models = check_caaa(pool, device, args.precision, steps, shp, Path(tmp), not args.nchw, workers)
        engine_rows, engine_models = check_engine(device, args.precision, steps, shp, Path(tmp), not args.nchw, workers)
    inference = check_inference(caaa_models, engine_models, pool, device, shp, runs)
    report = {
        "what": "speed and memory of freshly initialised models at paper shapes (never accuracy)",
        "size": args.size,
        "layout": "NCHW" if args.nchw else "channels-last",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "precision": args.precision,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cpu_threads": torch.get_num_threads(),
        "pool": {"pairs": len(pool), "seconds": round(pool_seconds, 1), **{k: list(v) if isinstance(v, tuple) else v for k, v in shp["pool"].items()}},
        "trainers": {**caaa_rows, **engine_rows},
        "inference": inference,
        "seconds_total": round(time.perf_counter() - t_start, 1),
    }
    missing = [t for t in TRAINERS if t not in report["trainers"]]
    assert not missing, missing
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['seconds_total']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
