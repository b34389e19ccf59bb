"""QES on hand-made soft masks."""

from __future__ import annotations

import numpy as np
import pytest

from webiml import io
from webiml.caaa.qes import QES_HIGH, QES_LOW, keep, qes
from webiml.io import read_soft_mask


def test_constants():
    assert QES_HIGH == 15 / 16 and QES_LOW == 1 / 16


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.bool_])
def test_all_zero_is_zero_and_dropped(dtype):
    q = qes(np.zeros((8, 8), dtype=dtype))
    assert q == 0.0 and isinstance(q, float)
    assert not keep(q)


def test_all_one_is_about_one():
    assert qes(np.ones((8, 8))) == pytest.approx(1.0, abs=1e-6)
    assert qes(np.full((8, 8), 255, np.uint8)) == pytest.approx(1.0, abs=1e-6)
    assert qes(np.ones((8, 8), bool)) == pytest.approx(1.0, abs=1e-6)
    assert keep(qes(np.ones((8, 8))))


def test_half_confident_is_half_and_not_kept():
    p = np.full((8, 8), 0.5)
    p[:4] = 1.0
    q = qes(p)
    assert q == pytest.approx(0.5, abs=1e-6)
    assert not keep(q)
    assert not keep(0.5)  # strictly greater
    assert keep(0.5 + 1e-9)
    assert not keep(0.7, threshold=0.7) and keep(0.7, threshold=0.69)


def test_boundaries_are_strict():
    # exactly 15/16 is not confident, exactly 1/16 is not positive
    assert qes(np.array([QES_HIGH, QES_LOW, 1.0, 0.0])) == pytest.approx(1 / 2, abs=1e-6)
    assert qes(np.full(4, QES_HIGH)) == 0.0
    assert qes(np.full(4, QES_LOW)) == 0.0
    assert qes(np.array([np.nextafter(QES_HIGH, 1), np.nextafter(QES_LOW, 1)])) == pytest.approx(0.5, abs=1e-6)


def test_uint8_equals_float():
    every = np.arange(256, dtype=np.uint8)
    assert qes(every) == qes(every / 255.0) == qes((every / 255.0).astype(np.float32))
    rng = np.random.default_rng(0)
    u = rng.integers(0, 256, (37, 41), dtype=np.uint8)
    assert qes(u) == qes(u.astype(np.float64) / 255.0)
    # 240/255 > 15/16 > 239/255 and 16/255 > 1/16 > 15/255
    assert qes(np.array([240, 16], np.uint8)) == pytest.approx(0.5, abs=1e-6)
    assert qes(np.array([239, 15], np.uint8)) == 0.0


def test_out_of_range_raises():
    with pytest.raises(ValueError):
        qes(np.array([0.0, 2.0]))
    with pytest.raises(ValueError):
        qes(np.array([0, 255], np.int64))


def test_read_soft_mask_roundtrip(tmp_path):
    p = np.linspace(0, 1, 64).reshape(8, 8)
    io.write_soft_mask(tmp_path / "m.png", p)
    m = read_soft_mask(tmp_path / "m.png")
    assert m.dtype == np.uint8 and m.shape == (8, 8)
    assert np.abs(m.astype(int) - np.round(p * 255)).max() <= 1
    with pytest.raises(io.Rejected) as e:
        read_soft_mask(tmp_path / "absent.png")
    assert e.value.reason == "missing-file"
