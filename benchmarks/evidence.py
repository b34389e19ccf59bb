"""How much of DASS's SPG score depends on the pairs carrying evidence of their edits (README numbers).

Two synthetic corpora (collect's recipe, plain and evident) and two DASS models trained as in
train_annotators (params.yaml) on a plain and an evident pool, single runs at mini size, scored
against the corpus truth (mean IoU over SPG pairs):

- plain corpus, plain pool: edits may change nothing visible or lie outside the authentic's crop;
- evident corpus, plain pool: only the test corpus changes;
- evident corpus, evident pool: the default (``synth.EVIDENT_PAIRS`` for both).

About 9 minutes on 2 CPU threads. Usage: python benchmarks/evidence.py [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import yaml

from webiml import io
from webiml.caaa.annotate import load_pair
from webiml.caaa.annotator import _spg_view, dass_native
from webiml.caaa.models import DASS
from webiml.caaa.pool import PairStream, PoolConfig, make_pool
from webiml.train import fit
from webiml.train_annotators import dass_config, dass_step, parse_params
from webiml.config import from_dict
from webiml.collect import candidates_from, collect, config_from_params
from webiml.evaluate.metrics import pixel_scores
from webiml.photos import load_photos

ROOT = Path(__file__).resolve().parents[1]
PLAIN = {"min_changed": 0.0, "authentic_keeps_edit": False}


def make_corpus(params: dict, out: Path, plain: bool) -> Path:
    p = dict(params["collect"], seed=params["seed"])
    p["synthetic"] = {**p.get("synthetic", {}), **(PLAIN if plain else {})}
    collect(candidates_from(["synthetic"], n_pairs=int(p["n_pairs"])), out / "pairs", config_from_params(p),
            audit=out / "audit", progress=False)
    return out


def train_dass(params: dict, plain: bool, seed: int, pool_seed: int | None = None, **pool_overrides) -> tuple[DASS, float]:
    """DASS as train_annotators trains it; ``pool_overrides`` change the pool recipe (PoolConfig)."""
    ta = params["train_annotators"]
    pcfg = from_dict(PoolConfig, {**ta["pool"], **(PLAIN if plain else {}), **pool_overrides}, "train_annotators.pool")
    t0 = time.perf_counter()
    pool = make_pool(load_photos(pcfg.photo_split), pcfg, seed if pool_seed is None else pool_seed, progress=False)
    n_val = max(8, int(len(pool) * float(ta.get("val_fraction", 0.15))))
    tr = np.arange(len(pool))[:-n_val]
    torch.manual_seed(seed)
    model = DASS(dass_config(pcfg, encoder=ta["encoder"], weights=ta["weights"]))
    with tempfile.TemporaryDirectory() as run:
        fit(model, PairStream(pool, tr[pool.category[tr] == 0], seed, native=True), parse_params(ta, seed)[1]["dass"], run, model.cfg,
            step_fn=dass_step, progress=False)
    return model, time.perf_counter() - t0


def score_spg(model: DASS, corpus: Path, small: float = 0.01) -> dict:
    """Mean IoU over the corpus's SPG pairs, per first edit op, and over edits under ``small`` of the image."""
    recs = {r.id: r for r in io.read_pairs(corpus / "pairs")}
    per_op: dict[str, list[float]] = defaultdict(list)
    small_ious = []
    for t in io.read_jsonl(corpus / "audit" / "audit.jsonl"):
        if t["category"] != "spg" or t["id"] not in recs:
            continue
        pair = load_pair(corpus / "pairs", recs[t["id"]])
        truth = io.read_mask(corpus / "audit" / t["mask"]) > 0
        iou = pixel_scores(dass_native(model, pair.forged, _spg_view(pair), tta=True), truth, threshold=0.5)["iou"]
        per_op[t["meta"]["ops"][0]["op"]].append(iou)
        if truth.mean() < small:
            small_ious.append(iou)
    ious = [v for vs in per_op.values() for v in vs]
    return {"n": len(ious), "spg_iou": round(float(np.mean(ious)), 4),
            "n_small": len(small_ious), "small_iou": round(float(np.mean(small_ious)), 4) if small_ious else None,
            "per_op": {k: round(float(np.mean(v)), 3) for k, v in sorted(per_op.items())}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = yaml.safe_load(Path(args.params).read_text())
    seed = int(params["seed"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpora = {plain: make_corpus(params, Path(tmp) / ("plain" if plain else "evident"), plain) for plain in (True, False)}
        models = {}
        for corpus_plain, pool_plain in ((True, True), (False, True), (False, False)):
            if pool_plain not in models:
                models[pool_plain] = train_dass(params, pool_plain, seed)
            model, secs = models[pool_plain]
            row = {"corpus": "plain" if corpus_plain else "evident", "pool": "plain" if pool_plain else "evident",
                   "train_seconds": round(secs, 1), **score_spg(model, corpora[corpus_plain])}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        io.write_json(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
