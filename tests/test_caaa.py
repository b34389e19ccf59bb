"""CAAAv2 networks, encoders, routing, checkpoints and the one-pair command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from webiml import io
from webiml.caaa import models as M
from webiml.caaa.annotate import PairInputs
from webiml.caaa.annotator import CAAAnnotator
from webiml.caaa.pool import PairStream, PoolConfig, batch, make_pool
from webiml.caaa.views import corners_in_forged, native_scale, native_view
from webiml.device import batch_to
from webiml.train import TrainConfig, fit
from webiml.train_annotators import corr_step, dass_step
from webiml.models.checkpoint import load_checkpoint, save_checkpoint
from webiml.models.encoders import create_encoder, encoder_stats, feature_channels
from webiml.photos import load_photo, load_photos


def test_offline_lite0_is_a_real_imagenet_model():
    import cv2

    m = create_encoder(features_only=False).eval()
    mean, std = encoder_stats(m)
    x = cv2.resize(load_photo("chelsea").rgb, (224, 224)).astype(np.float32) / 255
    x = (torch.from_numpy(x).permute(2, 0, 1)[None] - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    with torch.no_grad():
        top5 = m(x).topk(5).indices[0].tolist()
    assert set(top5) & {281, 282, 283, 284, 285}, top5  # ImageNet's domestic-cat classes


def test_encoder_channels_stem_and_weight_sources(tmp_path):
    e9 = create_encoder(in_chans=9)
    assert feature_channels(e9) == [16, 24, 40, 112, 320]
    e3 = create_encoder()
    w3, w9 = e3.conv_stem.weight, e9.conv_stem.weight
    assert w9.shape[1] == 9 and torch.allclose(w9[:, :3] * 3, w3, atol=1e-6)  # repeated, rescaled RGB filters
    torch.save(e3.state_dict(), tmp_path / "w.pth")
    e_file = create_encoder(weights=str(tmp_path / "w.pth"))
    assert torch.equal(e_file.conv_stem.weight, w3)
    with pytest.raises(ValueError, match="offline"):
        create_encoder("resnet18", weights="offline")
    with pytest.raises(FileNotFoundError):
        create_encoder(weights=str(tmp_path / "missing.pth"))
    assert not torch.equal(create_encoder(weights="none").conv_stem.weight, w3)


def test_dass_difference_is_float_not_wrapped_uint8():
    a = np.full((8, 8, 3), 51, np.uint8)
    f = np.full((8, 8, 3), 204, np.uint8)
    x = M.DASS.inputs(M.to_tensor(f, 8)[None], M.to_tensor(a, 8)[None])
    assert x.shape == (1, 9, 8, 8)
    assert torch.allclose(x[:, 6:], torch.full((1, 3, 8, 8), 153 / 255))  # uint8 a - f would wrap to 103
    assert (a - f)[0, 0, 0] == 103  # the trap the float difference avoids


def test_model_shapes_and_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    d = M.DASS(M.DASSConfig(weights="none", size=64)).eval()
    f, a = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    assert d(f, a)["logits"].shape == (2, 1, 64, 64)
    p = d.predict_tta(f, a)
    assert p.shape == (2, 1, 64, 64) and 0 <= float(p.min()) and float(p.max()) <= 1
    save_checkpoint(tmp_path / "d.pt", d, d.cfg, {"metrics": {"iou": 0.5}})
    d2, extra = load_checkpoint(tmp_path / "d.pt", M.NETWORKS)
    assert extra["metrics"]["iou"] == 0.5 and isinstance(d2, M.DASS)
    assert torch.allclose(d2(f, a)["logits"], d(f, a)["logits"], atol=1e-6)
    c = M.CorrDINO(M.CorrConfig(weights="none", size=64)).train()
    assert not c.encoder.training  # the prior-feature encoder stays frozen, BN included
    assert all(not q.requires_grad for q in c.encoder.parameters())
    assert c(f, a)["logits"].shape == (2, 1, 64, 64)
    k = M.PairClassifier(M.ClassifierConfig(weights="none", size=64))
    out = k(f, a)
    assert out["category"].shape == (2, 2) and out["box"].shape == (2, 8)


def test_caaa_models_share_one_contract():
    """Every CAAAv2 model (the unified baseline is a DASS): ``forward(forged, authentic) -> dict``,
    ``loss(out, batch) -> (finite scalar with grad, parts)``, as the Web-IML and BoxPromptIML models;
    the training steps go through ``loss``, and the inputs are not interchangeable (forged first)."""
    from webiml.train_annotators import classifier_step

    pool = make_pool(load_photos("train"), PoolConfig(n_pairs=4, size=64, base_side=(96, 128), max_side=128, min_side=96, crop=64),
                     seed=0, progress=False)
    b = batch_to(batch(pool, np.arange(4), np.random.default_rng(0), flip=False), torch.device("cpu"))
    f, a = b["forged"], b["authentic"]
    torch.manual_seed(0)
    models = {"classifier": (M.PairClassifier(M.ClassifierConfig(weights="none", size=64, dropout=0.0)), classifier_step(64)),
              "dass": (M.DASS(M.DASSConfig(weights="none", size=64)), dass_step),
              "corr": (M.CorrDINO(M.CorrConfig(weights="none", size=64)), corr_step())}
    for name, (model, step) in models.items():
        model.train()
        out = model(f, a)
        assert isinstance(out, dict), name
        if name == "classifier":
            assert set(out) == {"category", "aligned", "box"}
            helper = M.classifier_loss(out, b["category"], b["aligned"], b["box"])
        else:
            assert set(out) == {"logits"} and out["logits"].shape == (4, 1, 64, 64), name
            helper = M.segmentation_loss(out["logits"], b["mask"])
        loss, parts = model.loss(out, b)
        assert isinstance(parts, dict) and loss.ndim == 0 and torch.isfinite(loss) and loss.requires_grad, name
        assert torch.equal(loss, helper), name  # the free functions are the implementation
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad), name
        calls = []
        model.loss = lambda out, target, _loss=model.loss: calls.append(set(out)) or _loss(out, target)
        step_loss, _ = step(model, model, b)
        assert calls == [set(out)] and torch.isfinite(step_loss), name  # the step goes through .loss
        model.eval()
        with torch.no_grad():
            fwd, swapped = model(f, a), model(a, f)
        assert list(fwd) == list(swapped) and not all(torch.allclose(fwd[k], swapped[k]) for k in fwd), name
    corr = models["corr"][0]
    with torch.no_grad():  # Corr-DINO-lite takes pairs of different sizes and answers at the forged one
        big = torch.nn.functional.interpolate(a, size=(96, 96), mode="bilinear", align_corners=False)
        assert corr(f, big)["logits"].shape == (4, 1, 64, 64) and corr(big, f)["logits"].shape == (4, 1, 96, 96)


def test_corr_prior_feature_cache_gives_the_same_loss(tmp_path):
    """Corr-DINO-lite's training step keeps the frozen prior features of each (pair, flip): the loss
    equals the uncached forward's, and a cache of 0 MB keeps nothing but still trains."""
    pool = make_pool(load_photos("train"), PoolConfig(n_pairs=8, size=64, sdg_fraction=1.0), seed=2, progress=False)
    torch.manual_seed(0)
    c = M.CorrDINO(M.CorrConfig(weights="none", size=64)).train()
    b = batch_to(batch(pool, np.array([0, 1, 1, 3]), np.random.default_rng(0)), torch.device("cpu"))
    direct = c.loss(c(b["forged"], b["authentic"]), b)[0]
    step = corr_step(cache_mb=1024)
    first, again = step(c, c, b)[0], step(c, c, b)[0]  # computed, then read from the cache
    assert torch.allclose(first, direct, atol=1e-5) and torch.allclose(again, direct, atol=1e-5)
    calls = []
    c.prior_features = lambda f, a, _pf=c.prior_features: calls.append(len(f)) or _pf(f, a)
    step(c, c, b)
    assert calls == []  # every (pair, flip) of the batch was cached
    none = corr_step(cache_mb=0)
    none(c, c, b), none(c, c, b)
    assert calls == [3, 3]  # three distinct (pair, flip) keys, computed every time
    s = fit(c, PairStream(pool, np.arange(8), seed=0), TrainConfig(steps=4, batch_size=4, channels_last=False, threads=1),
            tmp_path / "corr", c.cfg, step_fn=corr_step(), progress=False, log_every=1)
    assert s["finished"] and np.isfinite(s["final_loss"])


def test_corners_in_forged():
    assert np.allclose(corners_in_forged(np.eye(3), (100, 50), (100, 50)), [0, 0, 1, 0, 1, 1, 0, 1])
    half = np.diag([0.5, 0.5, 1.0])
    assert np.allclose(corners_in_forged(half, (101, 51), (101, 51)), [0, 0, 0.5, 0, 0.5, 0.5, 0, 0.5])
    # sizes in the order (forged, authentic): a 101 × 51 authentic in the top-left of a 201 × 101 forged frame
    assert np.allclose(corners_in_forged(np.eye(3), (201, 101), (101, 51)), [0, 0, 0.5, 0, 0.5, 0.5, 0, 0.5])


def test_pool_labels_and_a_training_step_lowers_the_loss(tmp_path):
    pool = make_pool(load_photos("train"), PoolConfig(n_pairs=12, size=64), seed=3, progress=False)
    assert set(pool.category.tolist()) <= {0, 1} and pool[0].mask.shape == (64, 64)
    assert [pool[i].category for i in range(12)] == pool.category.tolist()  # known before the pairs are made
    spg = np.flatnonzero(pool.category == 0)
    assert len(spg) > 0 and all((pool[i].box >= 0).all() for i in spg)
    torch.manual_seed(0)
    d = M.DASS(M.DASSConfig(weights="none", size=64))
    fit(d, PairStream(pool, spg, seed=0), TrainConfig(steps=25, batch_size=4, lr=3e-3, warmup=2, threads=1), tmp_path / "dass", d.cfg,
        step_fn=dass_step, progress=False, log_every=1)
    hist = [float(r.split(",")[1]) for r in (tmp_path / "dass" / "history.csv").read_text().splitlines()[1:]]
    first, last = np.mean(hist[:5]), np.mean(hist[-5:])
    assert np.isfinite(last) and last < first


def test_the_pool_makes_pairs_on_demand_within_its_memory_budget():
    photos = load_photos("train")
    kept = make_pool(photos, PoolConfig(n_pairs=10, size=64, crop=48, max_side=200), seed=4, progress=False)
    small = make_pool(photos, PoolConfig(n_pairs=10, size=64, crop=48, max_side=200, cache_mb=0.2), seed=4, progress=False)
    assert len(kept.cache) == 10 and small.cache.held <= 0.2 * 2**20 and len(small.cache) < 10
    idx = np.array([9, 0, 3, 9])
    b1, b2 = batch(kept, idx, np.random.default_rng(0), native=True), batch(small, idx, np.random.default_rng(0), native=True)
    for k in b1:
        assert torch.equal(b1[k], b2[k]), k  # remade pairs are the same pairs


def test_native_crops_are_drawn_afresh_and_stay_aligned():
    pool = make_pool(load_photos("train"), PoolConfig(n_pairs=6, size=64, crop=48, max_side=200), seed=1, progress=False)
    assert len(pool) == 6 and pool.crop == 48
    for f, r, m in (pool[i].native for i in range(6)):
        assert f.shape == r.shape and m.shape == f.shape[:2] and max(f.shape[:2]) <= 200 and min(f.shape[:2]) >= 48
    rng = np.random.default_rng(0)
    b1, b2 = batch(pool, np.arange(6), rng, flip=False, native=True), batch(pool, np.arange(6), rng, flip=False, native=True)
    assert b1["forged"].shape == (6, 3, 48, 48) and b1["mask"].shape == (6, 1, 48, 48)
    assert not torch.equal(b1["forged"], b2["forged"])  # a new window every time
    # small images are padded up to the crop, the mask stays aligned with the pixels
    img = np.full((20, 30, 3), 200, np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:10] = 1
    f, r, m = native_view([img, img, mask], 48, 200)
    assert f.shape == (48, 48, 3) and m[5:10, 5:10].all() and m.sum() == 25 and f[30:, 40:].max() == 0


def test_native_scale_caps_large_and_raises_small_images():
    assert native_scale(300, 1536, 768) == 0.5 and native_scale(300, 600, 768) == 1.0
    assert native_scale(300, 600, 768, min_side=512) == 1.0  # already large enough
    assert native_scale(150, 256, 768, min_side=512) == 2.0
    assert native_scale(150, 256, 384, min_side=512) == 1.5  # never beyond max_side
    assert native_scale(300, 1536, 768, min_side=512) == 0.5
    # an enlarged view keeps image and mask aligned (bilinear image, nearest mask)
    img = np.zeros((20, 32, 3), np.uint8)
    img[4:8, 8:16] = 255
    mask = (img[..., 0] > 0).astype(np.uint8)
    f, r, m = native_view([img, img, mask], 48, 768, min_side=64)
    assert f.shape == (48, 64, 3) and m.shape == (48, 64)  # 40 x 64, padded to the crop height
    assert m.sum() == 4 * mask.sum() and m[8:16, 16:32].all() and (f[..., 0][m > 0] >= 128).all() and f[..., 0][m == 0].max() < 128


class _Const(torch.nn.Module):
    def __init__(self, value: float, size: int = 32):
        super().__init__()
        self.value, self.cfg = value, type("C", (), {"size": size, "max_side": 64, "min_side": 0})()
        self.calls = 0

    def forward(self, forged, authentic):
        self.calls += 1
        return {"logits": torch.full((forged.shape[0], 1, forged.shape[2], forged.shape[3]), float(np.log(self.value / (1 - self.value))))}

    def predict_tta(self, f, a):
        return torch.sigmoid(self(f, a)["logits"])


def test_dass_native_runs_small_images_at_min_side_and_answers_at_their_size():
    from webiml.caaa.annotator import dass_native

    model = _Const(0.7)
    model.cfg.min_side, model.cfg.max_side = 96, 128
    seen = []
    model.predict_tta = lambda f, a: (seen.append(tuple(f.shape[-2:])), torch.sigmoid(model(f, a)["logits"]))[1]
    prob = dass_native(model, np.zeros((30, 48, 3), np.uint8), np.zeros((30, 48, 3), np.uint8))
    assert seen == [(64, 96)]  # 30 x 48 enlarged 2x to a 96 long side, padded to multiples of 32
    assert prob.shape == (30, 48) and np.allclose(prob, 0.7, atol=1e-4)
    model.cfg.min_side = 0
    dass_native(model, np.zeros((30, 48, 3), np.uint8), np.zeros((30, 48, 3), np.uint8))
    assert seen[-1] == (32, 64)  # its own scale


class _Cls(torch.nn.Module):
    def __init__(self, cats):
        super().__init__()
        self.cats, self.cfg = cats, type("C", (), {"size": 32})()

    def forward(self, f, a):
        logits = torch.tensor([[4.0, -4.0] if c == "spg" else [-4.0, 4.0] for c in self.cats])
        return {"category": logits, "aligned": torch.zeros(len(self.cats), 2), "box": torch.zeros(len(self.cats), 8)}


def test_routing_spg_to_dass_and_sdg_to_corr():
    ann = object.__new__(CAAAnnotator)
    ann.classifier, ann.dass, ann.corr, ann.route, ann.tta = _Cls(["spg", "sdg", "spg"]), _Const(0.9), _Const(0.2), "classifier", True
    ann.reused = {}
    rgb = np.zeros((40, 60, 3), np.uint8)
    pairs = [PairInputs(str(i), rgb, np.zeros((30, 30, 3), np.uint8), None, None, "unregistered") for i in range(3)]
    res = ann.annotate_batch(pairs)
    assert [r.category for r in res] == ["spg", "sdg", "spg"]
    assert [r.annotator for r in res] == ["dass", "corr", "dass"]
    assert all(r.prob.shape == (40, 60) for r in res)
    assert np.allclose(res[0].prob, 0.9, atol=1e-4) and np.allclose(res[1].prob, 0.2, atol=1e-4)
    assert ann.dass.calls == 2 and ann.corr.calls == 1  # DASS per image at its own scale, Corr batched
    assert res[0].category_prob > 0.99


def test_classifier_route_reuses_dass_masks_of_another_route(tmp_path):
    ann = object.__new__(CAAAnnotator)
    ann.classifier, ann.dass, ann.corr, ann.route, ann.tta = _Cls(["spg", "spg", "sdg"]), _Const(0.9), _Const(0.2), "classifier", True
    rgb = np.zeros((40, 60, 3), np.uint8)
    pairs = [PairInputs(str(i), rgb, rgb, rgb, None, "registered") for i in range(3)]
    # pair 0 was sent to DASS before (its mask is reused), pair 1 to Corr-DINO (DASS must run), pair 2 goes to Corr now
    io.write_soft_mask(tmp_path / "masks/0.png", np.full((40, 60), 0.4, np.float32))
    io.write_soft_mask(tmp_path / "masks/1.png", np.full((40, 60), 0.1, np.float32))
    (tmp_path / "annotations.jsonl").write_text(
        json.dumps({"id": "0", "mask": "masks/0.png", "annotator": "dass"}) + "\n"
        + json.dumps({"id": "1", "mask": "masks/1.png", "annotator": "corr"}) + "\n" + '{"id": "2", "ma')
    from webiml.caaa.annotator import reusable_dass_masks

    ann.reused = reusable_dass_masks(tmp_path)
    assert set(ann.reused) == {"0"}
    res = ann.annotate_batch(pairs)
    assert np.allclose(res[0].prob, 102 / 255) and np.allclose(res[1].prob, 0.9, atol=1e-4) and np.allclose(res[2].prob, 0.2, atol=1e-4)
    assert [r.annotator for r in res] == ["dass", "dass", "corr"] and ann.dass.calls == 1


def test_auto_route_trusts_a_decisive_registration():
    ann = object.__new__(CAAAnnotator)
    ann.classifier, ann.dass, ann.corr, ann.tta = _Cls(["sdg", "spg", "sdg"]), _Const(0.9), _Const(0.2), False
    rgb = np.zeros((40, 60, 3), np.uint8)
    statuses = ["registered", "unregistered", "no-shared-content"]
    pairs = [PairInputs(str(i), rgb, rgb, rgb if s == "registered" else None, None, s) for i, s in enumerate(statuses)]
    ann.route = "auto"
    assert [c[0] for c in ann.classify(pairs)] == ["spg", "sdg", "sdg"]  # the last one: the classifier's call
    ann.route = "classifier"
    assert [c[0] for c in ann.classify(pairs)] == ["sdg", "spg", "sdg"]
    ann.route = "registration"
    assert [c[0] for c in ann.classify(pairs)] == ["spg", "sdg", "sdg"]


def test_annotate_pair_on_mismatched_sizes(tmp_path, tiny_models, capsys):
    import cv2

    from webiml.cli import main

    photo = load_photo("coffee").rgb
    forged = photo[20:380, 40:560].copy()
    forged[100:160, 200:300] = (255, 0, 0)
    authentic = cv2.resize(photo, (450, 300), interpolation=cv2.INTER_AREA)  # another size and frame
    io.write_image(tmp_path / "f.jpg", forged, jpeg_quality=90)
    io.write_image(tmp_path / "a.jpg", authentic, jpeg_quality=70)
    rc = main(["annotate-pair", str(tmp_path / "f.jpg"), str(tmp_path / "a.jpg"), "-o", str(tmp_path / "m.png"),
               "--models", str(tiny_models), "--json"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"category", "aligned", "qes", "kept", "mask"} <= set(r)
    assert r["registration"] == "registered" and r["category"] in ("spg", "sdg")
    mask, _ = io.read_image(tmp_path / "m.png")
    assert mask.shape[:2] == forged.shape[:2]
    assert 0.0 <= r["qes"] <= 1.0 and r["qes_kept"] == (r["qes"] > 0.5)
    assert r["kept"] == (r["qes_kept"] and r["refused"] is None)


def test_annotate_pair_without_models_says_which_stage(tmp_path, capsys):
    from webiml.cli import main

    io.write_image(tmp_path / "f.png", load_photo("coffee").rgb)
    rc = main(["annotate-pair", str(tmp_path / "f.png"), str(tmp_path / "f.png"), "-o", str(tmp_path / "m.png"),
               "--models", str(tmp_path / "nope")])
    assert rc == 2
    assert "train_annotators" in capsys.readouterr().err
