"""Do our BenCo indexes load in IMDL-BenCo itself, and do its pixel metrics agree with ours?

For each index: IMDL-BenCo's own ``JsonDataset`` reads it from an unrelated working directory (it
resolves paths as written); every entry must load. A trained model's probabilities, predicted on
the image as BenCo loaded it, are scored by BenCo's ``PixelF1`` / ``PixelIOU`` (on its padded
tensors) and by ``webiml benchmark``'s ``evaluate_model``; the per-image and mean F1 / IoU over
tampered images must agree to ``--tol``. The scores with BenCo's padding ``shape_mask`` applied
are reported too, with the number of images where the mask changes them.

IMDL-BenCo is not a dependency of this project (it pins numpy<2 and albumentations 1.3.0). To run
it, put its package and the few pure-Python packages it imports on PYTHONPATH, e.g.::

    pip install --no-deps --target /tmp/benco imdlbenco==0.1.45 albumentations==1.3.0 qudida rich \\
        fvcore appdirs colorama ttach iopath yacs tabulate termcolor portalocker
    PYTHONPATH=/tmp/benco python benchmarks/benco_check.py --model webiml

Writes ``reports/benco_check.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", nargs="+", default=["data/dataset/index.json", "data/testset/index.json"])
    ap.add_argument("--model", default="webiml", help="a name from `webiml models` or a checkpoint")
    ap.add_argument("--tol", type=float, default=1e-7)
    ap.add_argument("--out", default="reports/benco_check.json")
    args = ap.parse_args(argv)
    try:
        import torch
        from IMDLBenCo.datasets import JsonDataset
        from IMDLBenCo.evaluation import PixelF1, PixelIOU
    except ImportError as e:
        print(f"IMDL-BenCo is not importable ({e}); see this script's docstring", file=sys.stderr)
        return 2
    from webiml.evaluate.benchmark import evaluate_model
    from webiml.infer import load_model, predict_prob

    torch.set_num_threads(2)
    lm = load_model(args.model, ".")
    f1_eval, iou_eval = PixelF1(), PixelIOU()
    result = {"model": args.model, "imdlbenco": __import__("IMDLBenCo").__version__, "tol": args.tol, "indexes": {}}
    ok = True
    for index in map(Path, args.index):
        index = index.resolve()
        ours_summary, ours_rows = evaluate_model(lm, index, progress=False)
        ours = {r["name"]: r for r in ours_rows}
        here = os.getcwd()
        with tempfile.TemporaryDirectory() as elsewhere:
            os.chdir(elsewhere)  # BenCo resolves the index's paths against the working directory
            try:
                raw = json.loads(index.read_text())
                side = 32 * -(-max(max(_size(p)) for p, _ in raw) // 32)
                ds = JsonDataset(str(index), is_padding=True, output_size=(side, side))
                rows = []
                for i in range(len(ds)):
                    item = ds[i]  # BenCo's full loading path (loader, shape check, binarised mask, padding)
                    tp_img, _, label, _, _, tp_path, _ = ds._get_image(i)
                    if not label:
                        continue
                    prob = predict_prob(lm, np.asarray(tp_img), max_side=1024)
                    h, w = prob.shape
                    pad = torch.zeros(1, 1, side, side)
                    pad[0, 0, :h, :w] = torch.from_numpy(prob)
                    mask = item["mask"][None].float()
                    shape_mask = item["shape_mask"][None].float()
                    # prediction and truth are zero in the padding, so F1 and IoU need no shape mask;
                    # with BenCo's own shape mask they are reported apart (see the module doc)
                    row = {"name": Path(tp_path).name}
                    for key, sm in (("", None), ("_shape_mask", shape_mask)):
                        tp, tn, fp, fn = f1_eval.Cal_Confusion_Matrix(pad, mask, sm)
                        row["f1" + key] = float(f1_eval.Cal_F1(tp, tn, fp, fn)[0])
                        row["iou" + key] = float(iou_eval.Cal_IOU(pad, mask, sm)[0])
                    rows.append(row)
            finally:
                os.chdir(here)
        diffs = {k: max((abs(r[k] - ours[r["name"]][k]) for r in rows), default=0.0) for k in ("f1", "iou")}
        means = {k: float(np.mean([r[k] for r in rows])) if rows else None for k in ("f1", "iou")}
        entry = {
            "entries": len(raw), "loaded": len(ds), "tampered": len(rows),
            "benco_pixel_f1": means["f1"], "webiml_pixel_f1": ours_summary.get("pixel_f1"),
            "benco_pixel_iou": means["iou"], "webiml_pixel_iou": ours_summary.get("pixel_iou"),
            "max_abs_diff_per_image": diffs,
            "benco_pixel_f1_with_its_shape_mask": float(np.mean([r["f1_shape_mask"] for r in rows])) if rows else None,
            "images_where_its_shape_mask_changes_f1": sum(abs(r["f1_shape_mask"] - r["f1"]) > args.tol for r in rows),
        }
        entry["agree"] = bool(len(ds) == len(raw) and max(diffs.values()) <= args.tol and rows and
                              abs(means["f1"] - ours_summary["pixel_f1"]) <= args.tol and
                              abs(means["iou"] - ours_summary["pixel_iou"]) <= args.tol)
        ok &= entry["agree"]
        result["indexes"][str(index)] = entry
        print(f"{index}: {entry}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if ok else 1


def _size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


if __name__ == "__main__":
    sys.exit(main())
