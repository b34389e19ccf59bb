"""The Web-IML model: shapes at any size, switches, MSP gates, SR dynamic kernels, OHEM, Dice,
checkpoints and a tiny overfit run."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score, log_loss

from webiml.infer import DETECTORS
from webiml.models.checkpoint import load_checkpoint, save_checkpoint
from webiml.models.webiml import (
    SelfRectification,
    WebIML,
    WebIMLConfig,
    dice_loss,
    ohem_bce,
    ohem_select,
)
from webiml.photos import load_photo

torch.set_num_threads(2)


def _model(**kw) -> WebIML:
    torch.manual_seed(0)
    return WebIML(WebIMLConfig(**{"weights": "none", **kw})).eval()


@pytest.fixture(scope="module")
def default_model() -> WebIML:
    torch.manual_seed(0)
    return WebIML(WebIMLConfig()).eval()  # the offline ImageNet Lite0


@pytest.mark.parametrize("b,hw", [(1, (64, 64)), (2, (96, 160)), (1, (37, 53)), (2, (131, 97)), (1, (8, 8))])
def test_shapes_at_any_size(default_model, b, hw):
    x = torch.rand(b, 3, *hw)
    with torch.no_grad():
        out = default_model(x)
    assert out["logits"].shape == (b, 1, *hw)
    assert len(out["passes"]) == 4 and all(p.shape == (b, 1, *hw) for p in out["passes"])
    assert torch.equal(out["passes"][-1], out["logits"])
    assert out["score"].shape == (b,) and torch.isfinite(out["score"]).all()
    # the score is the logit of the max of the smoothed map: never above the map's own max
    assert (torch.sigmoid(out["score"]) <= torch.sigmoid(out["logits"]).amax((1, 2, 3)) + 1e-4).all()


def test_padding_does_not_leak_into_the_map(default_model):
    """A 60×60 image is padded to 64: its map must match the top-left of a 64×64 image whose extra
    border replicates the edge (the same input the encoder sees)."""
    x = torch.rand(1, 3, 60, 60)
    x64 = F.pad(x, (0, 4, 0, 4), mode="replicate")
    with torch.no_grad():
        a, b = default_model(x)["passes"][0], default_model(x64)["passes"][0]
    assert torch.allclose(a, b[..., :60, :60], atol=1e-6)


@pytest.mark.parametrize(
    "kw,n_passes,has_sr",
    [({}, 4, True), ({"msp": False}, 4, True), ({"sr_passes": 0}, 1, False), ({"sr_passes": 1}, 2, True),
     ({"decoder": "fpn"}, 1, False), ({"input_scales": (0.5,)}, 4, True), ({"out_indices": (2, 3, 4)}, 4, True)],
)
def test_switches(kw, n_passes, has_sr):
    m = _model(**kw)
    assert m.n_passes == n_passes
    x = torch.rand(2, 3, 70, 90)
    with torch.no_grad():
        out = m(x)
    assert len(out["passes"]) == n_passes and out["logits"].shape == (2, 1, 70, 90)
    assert ("kernels" in out) == has_sr and ("attention" in out) == has_sr
    if has_sr:
        assert len(out["kernels"]) == n_passes - 1 and out["kernels"][0].shape == (2, 15, 15)
    names = {n.split(".")[0] for n, _ in m.named_parameters()}
    if kw.get("decoder") == "fpn":
        assert names == {"encoder", "fpn", "head"}
    else:
        assert ("sr" in names) == has_sr
        assert any(n.startswith("msp.gates") for n, _ in m.named_parameters()) == kw.get("msp", True)


def test_msp_gates_are_image_adaptive():
    m = _model()
    x = torch.stack([torch.rand(3, 64, 64), torch.linspace(0, 1, 64).expand(3, 64, 64)])
    with torch.no_grad():
        weights = m(x)["msp_weights"]
    n_levels = len(m.levels)
    assert [w.shape for w in weights] == [(2, n_levels - i) for i in range(n_levels - 1)]
    assert all(((w > 0) & (w < 1)).all() for w in weights)
    assert not torch.allclose(weights[0][0], weights[0][1], atol=1e-4)
    with torch.no_grad():
        assert _model(msp=False)(x)["msp_weights"] == []


def test_dynamic_kernel_depends_on_the_prediction():
    torch.manual_seed(0)
    sr = SelfRectification(kernel=7).eval()
    yy, xx = torch.meshgrid(torch.arange(40), torch.arange(48), indexing="ij")
    blob = ((yy - 12) ** 2 + (xx - 30) ** 2 < 64).float()
    prob = torch.stack([blob * 0.9, torch.full_like(blob, 0.05)])[:, None]
    with torch.no_grad():
        att, kernels = sr(prob)
        # the batch-as-groups convolution equals convolving each image with its own kernel
        resp = torch.cat([F.conv2d(prob[i : i + 1], kernels[i][None, None], padding=3) for i in range(2)])
    assert kernels.shape == (2, 7, 7)
    assert (kernels[0] - kernels[1]).abs().max() > 1e-3
    lo, hi = resp.amin((2, 3), keepdim=True), resp.amax((2, 3), keepdim=True)
    expected = torch.maximum((resp - lo) / (hi - lo + 1e-6), prob)
    assert torch.allclose(att, expected, atol=1e-5)
    assert att.shape == prob.shape and (att >= prob).all() and att.min() >= 0 and att.max() <= 1 + 1e-6


def test_dynamic_kernels_differ_between_images_in_the_model():
    m = _model()
    x = torch.stack([torch.rand(3, 64, 64), torch.zeros(3, 64, 64)])
    x[1, :, 16:48, 16:48] = 1.0
    with torch.no_grad():
        out = m(x)
    k = out["kernels"][0]
    assert (k[0] - k[1]).abs().max() > 1e-4
    assert out["attention"][0].shape[-2:] == (8, 8)  # the fused (stride-8) resolution


def _ohem_case() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """10 pixels with known probabilities of their true class (half positives, half negatives)."""
    p_true = np.array([0.1, 0.2, 0.5, 0.69, 0.71, 0.8, 0.9, 0.95, 0.99, 0.6])
    target = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0], dtype=np.float64)
    p_pos = np.where(target == 1, p_true, 1 - p_true)
    logits = torch.tensor(np.log(p_pos / (1 - p_pos)), dtype=torch.float64).view(1, 1, 2, 5)
    return logits, torch.tensor(target).view(1, 1, 2, 5), p_true


def test_ohem_keeps_only_hard_pixels_by_hand():
    logits, target, p_true = _ohem_case()
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    kept = ohem_select(loss, thresh=0.7, min_kept=0.1).flatten().numpy()
    assert kept.tolist() == (p_true < 0.7).tolist()  # 5 hard pixels >= ceil(0.1·10) = 1
    expected = -np.log(p_true[p_true < 0.7]).mean()
    assert ohem_bce(logits, target, 0.7, 0.1).item() == pytest.approx(expected, rel=1e-9)


def test_ohem_min_kept_adds_the_hardest_easy_pixels():
    logits, target, p_true = _ohem_case()
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    kept = ohem_select(loss, thresh=0.7, min_kept=0.8).flatten().numpy()
    assert kept.sum() == 8 and not kept[[7, 8]].any()  # all but the two easiest (0.95, 0.99)
    assert ohem_bce(logits, target, 0.7, 0.8).item() == pytest.approx(-np.log(np.sort(p_true)[:8]).mean(), rel=1e-9)
    # all pixels easy, min_kept 0: still the single hardest pixel
    easy = torch.full((1, 1, 3, 3), 5.0, dtype=torch.float64)
    easy[0, 0, 1, 2] = 3.0
    kept = ohem_select(F.binary_cross_entropy_with_logits(easy, torch.ones_like(easy), reduction="none"), 0.7, 0.0)
    assert kept.sum() == 1 and kept[0, 0, 1, 2]


def test_ohem_with_thresh_one_is_plain_bce_like_sklearn():
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(0, 2, (2, 1, 8, 8)))
    target = torch.tensor((rng.random((2, 1, 8, 8)) > 0.6).astype(np.float64))
    p = torch.sigmoid(logits).flatten().numpy()
    ref = log_loss(target.flatten().numpy(), p, labels=[0, 1])
    assert ohem_bce(logits, target, thresh=1.0, min_kept=0.0).item() == pytest.approx(ref, rel=1e-9)


def test_dice_on_hand_made_masks():
    a = torch.zeros(1, 1, 10, 10)
    a[..., 2:6, 2:6] = 1  # 16 px
    b = torch.zeros(1, 1, 10, 10)
    b[..., 4:8, 4:8] = 1  # 16 px, 4 shared
    disjoint = torch.zeros(1, 1, 10, 10)
    disjoint[..., 7:10, 0:3] = 1  # 9 px
    assert dice_loss(a, a).item() == pytest.approx(0.0)
    assert dice_loss(a, b, smooth=0.0).item() == pytest.approx(1 - 2 * 4 / 32)
    assert dice_loss(a, b, smooth=0.0).item() == pytest.approx(1 - f1_score(b.flatten().numpy(), a.flatten().numpy()))
    assert dice_loss(a, disjoint).item() == pytest.approx(1 - 1 / 26)
    assert dice_loss(torch.zeros_like(a), torch.zeros_like(a)).item() == pytest.approx(0.0)  # authentic, no false alarm
    # per image, averaged over the batch
    assert dice_loss(torch.cat([a, a]), torch.cat([a, b]), smooth=0.0).item() == pytest.approx((1 - 8 / 32) / 2)


def test_loss_parts_and_deep_supervision():
    m = _model(dice_weight=0.5)
    m.train()
    x = torch.rand(2, 3, 64, 64)
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 10:30, 20:50] = 1
    out = m(x)
    total, parts = m.loss(out, mask)
    per_pass = [parts[f"ohem_p{t}"] for t in range(4)]
    assert parts["ohem"] == pytest.approx(np.mean(per_pass), rel=1e-5)
    assert total.item() == pytest.approx(parts["ohem"] + 0.5 * parts["dice"], rel=1e-5)
    # every pass is supervised: the loss of pass 0 alone reaches the head through pass 0
    total.backward()
    assert m.head[1].weight.grad.abs().sum() > 0 and m.sr.generator[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="mask shape"):
        m.loss(out, mask[..., :32, :])


def test_bad_input_and_config():
    m = _model(sr_passes=0)
    with pytest.raises(ValueError, match="RGB"):
        m(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="decoder"):
        WebIMLConfig(decoder="unet")
    with pytest.raises(ValueError, match="sr_kernel"):
        WebIMLConfig(sr_kernel=4)
    with pytest.raises(ValueError, match="ohem"):
        WebIMLConfig(ohem_thresh=0.0)
    with pytest.raises(ValueError, match="offline"):
        WebIML(WebIMLConfig(encoder="resnet18"))  # no offline weights for other encoders


@pytest.mark.parametrize("kw", [{}, {"decoder": "fpn"}])
def test_checkpoint_round_trip(tmp_path, kw):
    m = _model(**kw)
    m.train()
    m(torch.rand(2, 3, 64, 64))  # move the BN running statistics away from their init
    m.eval()
    save_checkpoint(tmp_path / "model.pt", m, m.cfg, extra={"input_size": 64})
    loaded, extra = load_checkpoint(tmp_path / "model.pt", DETECTORS)
    assert isinstance(loaded, WebIML) and loaded.cfg.weights == "none" and extra == {"input_size": 64}
    assert loaded.cfg == WebIMLConfig(**{**m.cfg.__dict__, "weights": "none"})
    x = torch.rand(1, 3, 75, 83)
    with torch.no_grad():
        a, b = m(x), loaded(x)
    assert torch.equal(a["logits"], b["logits"]) and torch.equal(a["score"], b["score"])


def test_tiny_overfit_raises_iou():
    """A pasted patch in a photo: 40 steps on that one image must lower the loss and raise the IoU."""
    torch.manual_seed(0)
    base = load_photo("chelsea").rgb[40:104, 120:184].astype(np.float32) / 255
    donor = load_photo("coffee").rgb[100:164, 200:264].astype(np.float32) / 255
    mask = np.zeros((64, 64), np.float32)
    mask[20:44, 16:40] = 1
    img = base * (1 - mask[..., None]) + donor * mask[..., None]
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    y = torch.from_numpy(mask)[None, None]
    m = WebIML(WebIMLConfig(sr_passes=1, dice_weight=0.5))

    def iou() -> float:
        m.eval()
        with torch.no_grad():
            pred = m(x)["logits"] > 0
        m.train()
        return ((pred & (y > 0.5)).sum() / (pred | (y > 0.5)).sum().clamp(min=1)).item()

    iou0 = iou()
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        total, _ = m.loss(m(x), y)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    iou1 = iou()
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert iou1 > 0.7 and iou1 > iou0 + 0.3, (iou0, iou1)
