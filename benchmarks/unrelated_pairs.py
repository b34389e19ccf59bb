"""Does any label of an unrelated pair survive? Every unordered pair of two different bundled photos
(153), noise vs black, and each photo vs a flat grey image, through ``annotate-pair`` with the
trained CAAAv2 annotators.

Prints and writes ``reports/unrelated_pairs.json``: per registration status, how many pairs QES
alone would keep and how many the label guard lets through (must be 0), and the refusal reasons.
Needs the default run's ``models/annotators`` (stage train_annotators). About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="models/annotators")
    ap.add_argument("--out", default="reports/unrelated_pairs.json")
    args = ap.parse_args(argv)
    import torch
    from tqdm import tqdm

    from webiml import io
    from webiml.cli import annotate_pair
    from webiml.photos import load_photos

    torch.set_num_threads(2)
    photos = {p.name: p.rgb for p in load_photos()}
    rng = np.random.default_rng(0)
    cases = {f"{a}|{b}": (photos[a], photos[b]) for a, b in itertools.combinations(sorted(photos), 2)}
    cases["noise|black"] = (rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), np.zeros((300, 400, 3), np.uint8))
    for name, rgb in photos.items():
        cases[f"{name}|flat"] = (rgb, np.full_like(rgb, 128))
    by_status: dict[str, Counter] = defaultdict(Counter)
    kept = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, (forged, authentic) in tqdm(cases.items(), desc="unrelated pairs", unit="pair"):
            io.write_image(tmp / "f.png", forged)
            io.write_image(tmp / "a.png", authentic)
            r = annotate_pair(tmp / "f.png", tmp / "a.png", tmp / "m.png", args.models)
            c = by_status[r["registration"]]
            c["pairs"] += 1
            c["kept_by_qes_alone"] += r["qes_kept"]
            c["kept"] += r["kept"]
            c[f"refused:{r['refused']}"] += r["refused"] is not None
            if r["kept"]:
                kept.append({"pair": name, **r})
    result = {"n_pairs": len(cases), "by_registration": {k: dict(v) for k, v in by_status.items()}, "kept": kept}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0 if not kept else 1


if __name__ == "__main__":
    sys.exit(main())
