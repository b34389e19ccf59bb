"""The BoxPromptIML student: shapes, the α mix, switches, loss, budget, checkpoints, learning."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss
from torch.utils.flop_counter import FlopCounterMode

from webiml.models.boxprompt import BoxPromptConfig, BoxPromptStudent
from webiml.infer import DETECTORS
from webiml.models.checkpoint import load_checkpoint, save_checkpoint

torch.set_num_threads(2)


def _student(**kw) -> BoxPromptStudent:
    torch.manual_seed(0)
    return BoxPromptStudent(BoxPromptConfig(**{"weights": "none", **kw})).eval()


@pytest.fixture(scope="module")
def default_student() -> BoxPromptStudent:
    torch.manual_seed(0)
    return BoxPromptStudent(BoxPromptConfig()).eval()  # the offline ImageNet Lite0


def test_default_budget(default_student):
    n = sum(p.numel() for p in default_student.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        default_student(torch.rand(1, 3, 224, 224))
    assert 2.5e6 < n <= 6e6
    assert 0.5e9 < fc.get_total_flops() <= 2e9


@pytest.mark.parametrize("hw", [(224, 224), (256, 256), (320, 192), (97, 131)])
def test_shapes_at_any_size(default_student, hw):
    with torch.no_grad():
        out = default_student(torch.rand(2, 3, *hw))
    for k in ("logits", "prob", "a_base", "a_mem", "gate"):
        assert out[k].shape == (2, 1, *hw), k
    assert out["attention"].shape[:2] == (2, 16)
    torch.testing.assert_close(out["attention"].sum(1), torch.ones_like(out["attention"][:, 0]))
    torch.testing.assert_close(torch.sigmoid(out["logits"]), out["prob"], atol=1e-5, rtol=0)


def test_tiny_vit_encoder_any_size():
    m = _student(encoder="tiny_vit_5m_224", width=32, n_prototypes=4)
    assert m.resize_to is None  # timm's TinyViT pads its windows: no fixed input size
    with torch.no_grad():
        for hw in ((224, 224), (320, 192)):
            assert m(torch.rand(1, 3, *hw))["logits"].shape == (1, 1, *hw)
    with pytest.raises(ValueError, match="offline"):
        BoxPromptStudent(BoxPromptConfig(encoder="tiny_vit_5m_224"))  # no offline TinyViT weights


@pytest.mark.parametrize("alpha", [1.0, 0.3, 0.0])
def test_alpha_mix(alpha):
    m = _student(alpha=alpha, width=16, n_prototypes=4)
    with torch.no_grad():
        out = m(torch.rand(1, 3, 64, 96))
    expected = alpha * out["a_base"] * out["gate"] + (1 - alpha) * out["a_mem"]
    torch.testing.assert_close(out["prob"], expected.clamp(1e-6, 1 - 1e-6))
    assert 0 < out["gate"].min() and out["gate"].max() < 1


def test_switches():
    x = torch.rand(1, 3, 64, 64)
    full = _student(width=16, n_prototypes=4)
    no_mem = _student(width=16, memory=False, alpha=0.2)
    no_gate = _student(width=16, n_prototypes=4, gates=False)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(no_mem) < n(full) and n(no_gate) < n(full)
    with torch.no_grad():
        o = no_mem(x)
        assert "a_mem" not in o and no_mem.alpha == 1.0
        torch.testing.assert_close(o["prob"], (o["a_base"] * o["gate"]).clamp(1e-6, 1 - 1e-6))  # α ignored
        o = no_gate(x)
        assert torch.equal(o["gate"], torch.ones_like(o["gate"]))
        torch.testing.assert_close(o["prob"], (0.5 * o["a_base"] + 0.5 * o["a_mem"]).clamp(1e-6, 1 - 1e-6))


def test_bad_config_and_input():
    with pytest.raises(ValueError, match="alpha"):
        BoxPromptStudent(BoxPromptConfig(weights="none", alpha=1.5))
    m = _student(width=8, n_prototypes=2)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        m(torch.rand(1, 1, 32, 32))
    out = m(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="target shape"):
        m.loss(out, torch.zeros(1, 1, 16, 16))


@pytest.mark.parametrize("soft", [False, True])
def test_loss_is_bce_against_sklearn(soft):
    m = _student(width=8, n_prototypes=2, soft_labels=soft, dice_weight=0.0)  # the paper's loss: BCE alone
    with torch.no_grad():
        out = m(torch.rand(2, 3, 32, 32))
    target = torch.rand(2, 1, 32, 32)
    total, parts = m.loss(out, target)
    p = out["prob"].numpy().ravel().astype(np.float64)
    if soft:  # BCE with soft targets: the mean of -(t log p + (1 - t) log(1 - p))
        t = target.numpy().ravel().astype(np.float64)
        ref = -np.mean(t * np.log(p) + (1 - t) * np.log1p(-p))
    else:
        ref = log_loss((target.numpy().ravel() > 0.5).astype(int), p, labels=[0, 1])
    assert total.item() == pytest.approx(ref, rel=1e-4) and parts["bce"] == pytest.approx(total.item())
    hard, _ = m.loss(out, (target > 0.5).float())
    assert (total.item() == pytest.approx(hard.item())) != soft


def test_dice_weight_adds_the_soft_dice_of_the_binarised_target():
    m = _student(width=8, n_prototypes=2, dice_weight=0.5)
    with torch.no_grad():
        out = m(torch.rand(2, 3, 32, 32))
    target = torch.rand(2, 1, 32, 32)
    total, parts = m.loss(out, target)
    p, y = out["prob"].numpy().reshape(2, -1).astype(np.float64), (target.numpy().reshape(2, -1) > 0.5)
    dice = np.mean(1 - (2 * (p * y).sum(1) + 1) / (p.sum(1) + y.sum(1) + 1))
    assert parts["dice"] == pytest.approx(dice, rel=1e-5) and total.item() == pytest.approx(parts["bce"] + 0.5 * dice, rel=1e-5)


def test_gradients_reach_prototypes_gates_and_encoder():
    m = _student(width=16, n_prototypes=4).train()
    out = m(torch.rand(2, 3, 64, 64))
    m.loss(out, (torch.rand(2, 1, 64, 64) > 0.5).float())[0].backward()
    for p in (m.memory.keys, m.memory.values, m.gates[0].weight, m.base_head.weight, next(m.encoder.parameters())):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_checkpoint_round_trip(tmp_path, default_student):
    x = torch.rand(1, 3, 96, 128)
    save_checkpoint(tmp_path / "model.pt", default_student, default_student.cfg, extra={"student": "boxprompt"})
    loaded, extra = load_checkpoint(tmp_path / "model.pt", DETECTORS)
    assert isinstance(loaded, BoxPromptStudent) and extra == {"student": "boxprompt"}
    assert loaded.cfg == dataclasses.replace(default_student.cfg, weights="none")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["logits"], default_student(x)["logits"])


def test_tiny_overfit():
    torch.manual_seed(0)
    m = BoxPromptStudent(BoxPromptConfig(width=16, n_prototypes=4)).train()
    x = torch.rand(2, 3, 64, 64)
    y = torch.zeros(2, 1, 64, 64)
    y[0, :, 10:40, 20:50] = 1
    y[1, :, 30:60, 5:25] = 1
    x = x * (1 - y) + y * torch.tensor([0.9, 0.2, 0.1]).view(1, 3, 1, 1)  # a visible pasted region
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss, _ = m.loss(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_the_sam_teacher_runs_on_the_students_device(monkeypatch):
    import webiml.train_boxprompt as TB

    seen = {}

    def fake_teacher(kind, **kw):
        seen.update(kind=kind, **kw)
        return lambda rgb, boxes: np.zeros(rgb.shape[:2], np.float32)

    monkeypatch.setattr(TB, "make_teacher", fake_teacher)
    params = {"teacher": "sam", "sam_checkpoint": "sam.pth", "data": {"handcrafted": 1, "authentic": 0, "base_side": [64, 96]},
              "train": {"device": "cuda:1"}}
    TB.prepare_boxprompt_data(params, progress=False)
    assert seen == {"kind": "sam", "checkpoint": "sam.pth", "model_type": "vit_b", "device": "cuda:1"}
