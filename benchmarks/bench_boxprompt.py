"""Efficiency of the BoxPromptIML student and its teachers on CPU (numbers for the README).

Student (default, and without the prototype memory): parameters, FLOPs (torch FlopCounterMode:
2 per multiply-add) at 224² and 512², and the median latency of a batch-1 forward. Teachers (box,
grabcut, and SAM vit_b with *random* weights: latency and image-encoder FLOPs only, SAM weights are not shipped): latency
per image with one box, on synthetic forgeries from the ``train`` photos (base side 512 px); the
box and GrabCut pseudo-mask quality on those forgeries is reported too.

Usage: python benchmarks/bench_boxprompt.py [out.json] [--threads 2] [--runs 10] [--no-sam]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from webiml import io
from webiml.models.profile import gflops, median_seconds, profile
from webiml.boxes import boxes_from_mask
from webiml.samples import handcrafted_samples
from webiml.models.boxprompt import BoxPromptConfig, BoxPromptStudent
from webiml.models.teachers import BoxTeacher, GrabCutTeacher, SamTeacher, teacher_quality
from webiml.photos import load_photos

DEFAULT_OUT = "reports/metrics/boxprompt_efficiency.json"



def bench_student(name: str, cfg: BoxPromptConfig, runs: int) -> dict:
    model = BoxPromptStudent(cfg).eval()
    row: dict = {"model": name, **profile(model, (224, 512))}
    for side in (224, 512):
        x = torch.rand(1, 3, side, side)
        with torch.no_grad():
            row[f"latency_ms_{side}"] = round(1000 * median_seconds(lambda: model(x), runs), 1)
    return row


def bench_teacher(name: str, teacher, samples, runs: int, note: str = "") -> dict:
    rng = np.random.default_rng(0)
    rgb, truth = samples[0]
    boxes = boxes_from_mask(truth > 0.5, rng)[:1]
    row = {"model": name, "note": note, "image": f"{rgb.shape[1]}x{rgb.shape[0]}, 1 box",
           "latency_ms": round(1000 * median_seconds(lambda: teacher(rgb, boxes), runs), 2)}
    if not note:  # a real teacher: how good are its pseudo-masks
        q = teacher_quality(teacher, samples, rng=0)
        row.update({"iou": round(q["iou"], 3), "f1": round(q["f1"], 3), "n_images": q["n"]})
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=DEFAULT_OUT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10, help="timed runs per measurement (median)")
    ap.add_argument("--sam-runs", type=int, default=2)
    ap.add_argument("--samples", type=int, default=20, help="synthetic forgeries for the teachers")
    ap.add_argument("--no-sam", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    students = [
        bench_student("student (default: memory + gates)", BoxPromptConfig(), args.runs),
        bench_student("student without memory", BoxPromptConfig(memory=False), args.runs),
    ]
    samples = [s for s in handcrafted_samples(load_photos("train"), args.samples, np.random.default_rng(0), (512, 512)) if s[1].any()]
    teachers = [
        bench_teacher("teacher: box", BoxTeacher(), samples, args.runs),
        bench_teacher("teacher: grabcut", GrabCutTeacher(), samples, args.runs),
    ]
    if not args.no_sam:
        from segment_anything import sam_model_registry

        with tempfile.TemporaryDirectory() as tmp:
            ckpt = Path(tmp) / "sam_vit_b_random.pth"
            torch.save(sam_model_registry["vit_b"]().state_dict(), ckpt)
            sam = SamTeacher(ckpt, "vit_b")
        row = bench_teacher("teacher: SAM vit_b", sam, samples, args.sam_runs, note="RANDOM weights: latency only")
        row["parameters"] = sum(p.numel() for p in sam.predictor.model.parameters())
        row["gflops_image_encoder_1024"] = round(gflops(sam.predictor.model.image_encoder, 1024), 1)
        teachers.append(row)

    report = {"threads": args.threads, "runs": args.runs, "torch": torch.__version__,
              "flops": "torch FlopCounterMode (2 per multiply-add)", "students": students, "teachers": teachers}
    io.write_json(args.out, report)

    print(f"CPU, {args.threads} threads, median of {args.runs} runs (SAM: {args.sam_runs})\n")
    print("| student | params (M) | GFLOPs 224² | GFLOPs 512² | ms 224² | ms 512² |\n|---|---|---|---|---|---|")
    for r in students:
        print(f"| {r['model']} | {r['parameters'] / 1e6:.2f} | {r['gflops_224']:.2f} | {r['gflops_512']:.2f} "
              f"| {r['latency_ms_224']:.0f} | {r['latency_ms_512']:.0f} |")
    print("\n| teacher | image | ms / image | pseudo-mask IoU | F1 |\n|---|---|---|---|---|")
    for r in teachers:
        q = (f"{r['iou']:.3f} | {r['f1']:.3f}" if "iou" in r else f"{r['note']} | –")
        print(f"| {r['model']} | {r['image']} | {r['latency_ms']:.1f} | {q} |")
    for r in teachers:
        if "gflops_image_encoder_1024" in r:
            print(f"\n{r['model']}: {r['parameters'] / 1e6:.1f} M parameters, image encoder {r['gflops_image_encoder_1024']:.0f} GFLOPs at 1024²")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
