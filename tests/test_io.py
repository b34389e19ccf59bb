"""Behaviour tests for webiml.io: image decoding, masks, dataset indexes, manifests, atomic writes.

Every test builds its own inputs in ``tmp_path`` with PIL/numpy; nothing touches the network or
../shared.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from webiml.geometry import long_side_scale, long_side_size, resize_by, resize_long_side, scaled_size
from webiml.io import (
    REASONS,
    JsonlWriter,
    PairRecord,
    Rejected,
    atomic_path,
    read_benco_index,
    read_image,
    read_index,
    read_jsonl,
    read_mask,
    read_mask_pixels,
    read_pairs,
    read_soft_mask,
    read_tp_gt_dir,
    write_benco_index,
    write_json,
    write_mask,
    write_soft_mask,
    write_tp_gt_dir,
)

# ------------------------------------------------------------------------------- helpers


def _snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def _read(path: Path, **kw):
    """read_image, asserting the input file's bytes and mtime are unchanged afterwards."""
    before = _snapshot(path) if path.is_file() else None
    try:
        return read_image(path, **kw)
    finally:
        if before is not None:
            assert _snapshot(path) == before, f"read_image modified {path}"


def _reject(path: Path, **kw) -> Rejected:
    with pytest.raises(Rejected) as ei:
        _read(path, **kw)
    assert ei.value.reason in REASONS
    assert ei.value.path == str(path)
    return ei.value


def _noise(h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(w: int, h: int) -> bytes:
    """A valid PNG header (8-bit grey IHDR) claiming ``w`` x ``h``, followed by an IDAT holding
    only 100 bytes of pixel data and IEND: decoding it fails, reading the header does not."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + _png_chunk(b"IEND", b"")
    )


def _close(px, expected, tol: int = 12) -> bool:
    return bool(np.all(np.abs(np.asarray(px, int) - np.asarray(expected, int)) <= tol))


# ------------------------------------------------------------------ read_image: rejections


def test_missing_file(tmp_path):
    e = _reject(tmp_path / "nope.jpg")
    assert e.reason == "missing-file"


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    assert _reject(p).reason == "empty-file"


def test_text_renamed_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not an image at all\n" * 20)
    assert _reject(p).reason == "not-an-image"


def test_directory_path(tmp_path):
    d = tmp_path / "folder.jpg"
    d.mkdir()
    assert _reject(d).reason == "not-an-image"


def test_jpeg_truncated_to_half(tmp_path):
    full = tmp_path / "full.jpg"
    Image.fromarray(_noise()).save(full, quality=90)
    data = full.read_bytes()
    p = tmp_path / "half.jpg"
    p.write_bytes(data[: len(data) // 2])
    # Sanity: PIL itself refuses it (OSError "image file is truncated ...").
    with pytest.raises(OSError, match="truncated"), Image.open(p) as im:
        im.load()
    e = _reject(p)
    assert e.reason == "truncated"
    assert "truncated" in e.detail


def test_png_truncated_mid_idat(tmp_path):
    full = tmp_path / "full.png"
    Image.fromarray(_noise()).save(full)
    data = full.read_bytes()
    idat = data.index(b"IDAT")
    p = tmp_path / "cut.png"
    p.write_bytes(data[: idat + (len(data) - idat) // 2])
    e = _reject(p)
    assert e.reason in ("truncated", "corrupt")
    assert e.reason == "truncated"  # what the code gives with this Pillow


def test_png_signature_then_random_bytes(tmp_path):
    rnd = np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes()
    p = tmp_path / "junk.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + rnd)
    e = _reject(p)
    assert e.reason in ("corrupt", "not-an-image")
    assert e.reason == "not-an-image"  # PIL cannot identify it at all


def test_too_large_full_image(tmp_path):
    p = tmp_path / "big.png"
    Image.new("1", (5000, 5000)).save(p)
    e = _reject(p, max_pixels=1_000_000)
    assert e.reason == "too-large"
    assert "5000x5000" in e.detail


def test_too_large_is_decided_from_the_header(tmp_path):
    # A 5000x5000 PNG with no pixel data: decoding it would give "truncated"/"corrupt", so
    # "too-large" proves the size check happens before any decoding.
    p = tmp_path / "header_only.png"
    p.write_bytes(_png_header_only(5000, 5000))
    assert _reject(p, max_pixels=1_000_000).reason == "too-large"
    # Same file under a generous limit is decoded and fails as a broken file.
    assert _reject(p, max_pixels=100_000_000).reason in ("truncated", "corrupt")


def test_decompression_bomb_header_is_too_large(tmp_path):
    # 30000x30000 = 9e8 px: Pillow's own DecompressionBombError fires inside Image.open.
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(30000, 30000))
    assert _reject(p).reason == "too-large"


def test_too_small(tmp_path):
    p = tmp_path / "thin.png"
    Image.fromarray(_noise(5, 100)).save(p)
    e = _reject(p)  # default min_side=8
    assert e.reason == "too-small"
    arr, _ = _read(p, min_side=5)
    assert arr.shape == (5, 100, 3)


def test_rejected_message_contains_reason_and_path(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    e = _reject(p)
    assert str(e).startswith("empty-file: ")
    assert str(p) in str(e)


# ------------------------------------------------------------------- read_image: decoding


def test_rgb_png_exact_and_info(tmp_path):
    a = _noise(30, 50)
    p = tmp_path / "rgb.png"
    Image.fromarray(a).save(p)
    arr, info = _read(p)
    assert arr.dtype == np.uint8 and arr.shape == (30, 50, 3)
    assert arr.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(arr, a)
    assert (info.format, info.mode, info.width, info.height) == ("PNG", "RGB", 50, 30)
    assert info.flags == []
    assert info.path == str(p)
    assert info.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()


def test_sha256_of_jpeg(tmp_path):
    p = tmp_path / "x.jpg"
    Image.fromarray(_noise()).save(p, quality=80)
    _, info = _read(p)
    assert info.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    assert info.format == "JPEG"


def test_grayscale_L(tmp_path):
    g = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (16, 1))  # 16x32
    p = tmp_path / "g.png"
    Image.fromarray(g, mode="L").save(p)
    arr, info = _read(p)
    assert arr.shape == (16, 32, 3) and arr.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(arr[..., c], g)
    assert info.mode == "L"
    assert info.flags == ["grayscale"]


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((10, 10, 4), np.uint8)
    a[...] = (10, 200, 30, 255)  # opaque green-ish
    a[0, 0] = (255, 0, 0, 0)  # fully transparent red
    a[0, 1] = (0, 0, 0, 128)  # half transparent black
    p = tmp_path / "rgba.png"
    Image.fromarray(a, mode="RGBA").save(p)
    arr, info = _read(p)
    assert arr.shape == (10, 10, 3) and arr.dtype == np.uint8
    assert tuple(arr[0, 0]) == (255, 255, 255)
    assert tuple(arr[5, 5]) == (10, 200, 30)
    assert _close(arr[0, 1], (127, 127, 127), tol=1)
    assert info.mode == "RGBA"
    assert info.flags == ["alpha-composited"]


def test_rgba_fully_opaque_has_no_flag(tmp_path):
    a = np.full((10, 10, 4), 255, np.uint8)
    a[..., :3] = (1, 2, 3)
    p = tmp_path / "opaque.png"
    Image.fromarray(a, mode="RGBA").save(p)
    arr, info = _read(p)
    assert tuple(arr[3, 3]) == (1, 2, 3)
    assert info.flags == []


def test_LA(tmp_path):
    im = Image.new("LA", (12, 12), (50, 255))
    im.putpixel((0, 0), (0, 0))  # transparent black
    p = tmp_path / "la.png"
    im.save(p)
    arr, info = _read(p)
    assert arr.shape == (12, 12, 3)
    assert tuple(arr[0, 0]) == (255, 255, 255)
    assert tuple(arr[6, 6]) == (50, 50, 50)
    assert info.mode == "LA"
    assert info.flags == ["alpha-composited"]


def test_palette_P(tmp_path):
    idx = np.zeros((10, 10), np.uint8)
    idx[:, 5:] = 1
    im = Image.fromarray(idx, mode="P")
    im.putpalette([200, 10, 20, 0, 0, 250] + [0] * (254 * 3))
    p = tmp_path / "pal.png"
    im.save(p)
    arr, info = _read(p)
    assert arr.shape == (10, 10, 3)
    assert tuple(arr[0, 0]) == (200, 10, 20)
    assert tuple(arr[0, 9]) == (0, 0, 250)
    assert info.mode == "P"
    assert info.flags == ["palette"]


def test_palette_with_transparency(tmp_path):
    idx = np.zeros((10, 10), np.uint8)
    idx[0, 0] = 1
    im = Image.fromarray(idx, mode="P")
    im.putpalette([200, 10, 20, 0, 0, 250] + [0] * (254 * 3))
    p = tmp_path / "palt.png"
    im.save(p, transparency=1)
    arr, info = _read(p)
    assert tuple(arr[0, 0]) == (255, 255, 255)
    assert tuple(arr[5, 5]) == (200, 10, 20)
    assert info.flags == ["palette", "alpha-composited"]


def test_16bit_png(tmp_path):
    u = np.zeros((10, 12), np.uint16)
    u[0, 0] = 65535
    u[0, 1] = 32768
    u[0, 2] = 257
    p = tmp_path / "u16.png"
    Image.fromarray(u).save(p)
    arr, info = _read(p)
    assert arr.shape == (10, 12, 3) and arr.dtype == np.uint8
    assert tuple(arr[0, 0]) == (255, 255, 255)
    assert abs(int(arr[0, 1, 0]) - 128) <= 1
    assert arr[0, 2, 0] == 1
    assert arr[5, 5, 0] == 0
    assert info.mode.startswith("I")
    assert info.flags == ["16bit"]


def test_cmyk_jpeg(tmp_path):
    im = Image.new("CMYK", (16, 16), (0, 0, 0, 0))  # white
    im.paste((255, 0, 0, 0), (0, 0, 8, 16))  # left half full cyan
    p = tmp_path / "cmyk.jpg"
    im.save(p, quality=95)
    arr, info = _read(p)
    assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8
    assert _close(arr[8, 12], (255, 255, 255))
    assert _close(arr[8, 3], (0, 255, 255))
    assert info.mode == "CMYK" and info.format == "JPEG"
    assert info.flags == ["cmyk"]


def test_mode_1(tmp_path):
    im = Image.new("1", (10, 10), 0)
    im.putpixel((3, 4), 1)
    p = tmp_path / "bits.png"
    im.save(p)
    arr, info = _read(p)
    assert arr.shape == (10, 10, 3) and arr.dtype == np.uint8
    assert tuple(arr[4, 3]) == (255, 255, 255)
    assert tuple(arr[0, 0]) == (0, 0, 0)
    assert info.mode == "1"
    assert info.flags == ["grayscale"]


def test_exif_orientation_6_rotates(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)  # stored 40 wide x 20 high
    a[:10] = (255, 0, 0)  # top band red
    a[10:] = (0, 0, 255)  # bottom band blue
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    p = tmp_path / "rot.jpg"
    im.save(p, quality=95, exif=exif)
    arr, info = _read(p)
    # Orientation 6 = rotate 90° clockwise to display: 20 wide x 40 high, top band -> right side.
    assert arr.shape == (40, 20, 3)
    assert (info.width, info.height) == (40, 20)  # info keeps the stored size
    assert _close(arr[20, 16], (255, 0, 0), tol=30)
    assert _close(arr[20, 3], (0, 0, 255), tol=30)
    assert info.flags == ["exif-rotated"]


def test_exif_orientation_1_not_flagged(tmp_path):
    im = Image.fromarray(_noise(20, 40))
    exif = im.getexif()
    exif[0x0112] = 1
    p = tmp_path / "upright.jpg"
    im.save(p, quality=95, exif=exif)
    arr, info = _read(p)
    assert arr.shape == (20, 40, 3)
    assert "exif-rotated" not in info.flags


# ------------------------------------------------------------------------------- masks


def _pixels(p: Path) -> tuple[str, np.ndarray]:
    with Image.open(p) as im:
        return im.mode, np.asarray(im)


@pytest.mark.parametrize(
    "mask",
    [
        np.array([[True, False, True], [False, True, False]]),
        np.array([[1, 0, 1], [0, 1, 0]], dtype=np.int64),
        np.array([[1, 0, 1], [0, 1, 0]], dtype=np.uint8),
        np.array([[255, 0, 255], [0, 255, 0]], dtype=np.uint8),
        np.array([[255, 0, 255], [0, 255, 0]], dtype=np.int32),
    ],
    ids=["bool", "int01", "uint8-01", "uint8-0-255", "int32-0-255"],
)
def test_write_mask_inputs(tmp_path, mask):
    p = tmp_path / "m.png"
    write_mask(p, mask)
    mode, px = _pixels(p)
    assert mode == "L" and px.shape == (2, 3)
    np.testing.assert_array_equal(px, np.array([[255, 0, 255], [0, 255, 0]], np.uint8))
    np.testing.assert_array_equal(read_mask(p), px == 255)
    assert [q.name for q in tmp_path.iterdir()] == ["m.png"]


def test_write_mask_rejects_non_2d(tmp_path):
    with pytest.raises(ValueError, match="2-D"):
        write_mask(tmp_path / "m.png", np.zeros((4, 4, 3), bool))
    assert not (tmp_path / "m.png").exists()


def test_read_mask_rgb_channel_mean(tmp_path):
    a = np.zeros((2, 2, 3), np.uint8)
    a[0, 0] = (255, 255, 0)  # mean 170 -> True
    a[0, 1] = (255, 0, 0)  # mean 85 -> False
    a[1, 0] = (128, 128, 128)  # 128 -> True
    a[1, 1] = (127, 127, 127)  # 127 -> False
    p = tmp_path / "rgbmask.png"
    Image.fromarray(a).save(p)
    m = read_mask(p)
    assert m.dtype == bool and m.shape == (2, 2)
    np.testing.assert_array_equal(m, [[True, False], [True, False]])


def test_read_mask_grey_threshold(tmp_path):
    g = np.array([[128, 127], [255, 0]], np.uint8)
    p = tmp_path / "g.png"
    Image.fromarray(g, mode="L").save(p)
    np.testing.assert_array_equal(read_mask(p), [[True, False], [True, False]])


def test_read_mask_mode_1(tmp_path):
    im = Image.new("1", (4, 3), 0)
    im.putpixel((2, 1), 1)
    p = tmp_path / "b.png"
    im.save(p)
    m = read_mask(p)
    assert m.shape == (3, 4)
    assert m.sum() == 1 and m[1, 2]


def test_read_mask_size_mismatch(tmp_path):
    p = tmp_path / "m.png"
    write_mask(p, np.ones((6, 10), bool))  # 10 wide, 6 high
    assert read_mask(p, size=(10, 6)).shape == (6, 10)
    with pytest.raises(Rejected) as ei:
        read_mask(p, size=(6, 10))
    assert ei.value.reason == "size-mismatch"
    assert "10x6" in ei.value.detail


def test_read_mask_16bit(tmp_path):
    u = np.array([[0, 65535, 30000, 40000]], np.uint16)
    p = tmp_path / "m16.png"
    Image.fromarray(u).save(p)
    np.testing.assert_array_equal(read_mask(p), [[False, True, False, True]])


def test_read_mask_bad_inputs(tmp_path):
    with pytest.raises(Rejected) as ei:
        read_mask(tmp_path / "none.png")
    assert ei.value.reason == "missing-file"
    t = tmp_path / "t.png"
    t.write_text("hello")
    with pytest.raises(Rejected) as ei:
        read_mask(t)
    assert ei.value.reason == "not-an-image"


def test_write_soft_mask(tmp_path):
    p = tmp_path / "soft.png"
    write_soft_mask(p, np.array([[0.0, 0.5, 1.0], [-1.0, 2.0, 0.25]]))
    mode, px = _pixels(p)
    assert mode == "L"
    np.testing.assert_array_equal(px, [[0, 128, 255], [0, 255, 64]])


def _mask_files(tmp_path: Path) -> dict[str, Path]:
    """The same 3x4 mask (one row set, one grey cell either side of the threshold) as 16-bit, mode-1 and palette files."""
    paths = {}
    u16 = np.array([[0, 0, 0, 0], [65535, 65535, 32768, 32767], [0, 0, 0, 0]], np.uint16)
    Image.fromarray(u16).save(paths.setdefault("16bit", tmp_path / "m16.png"))
    b = Image.new("1", (4, 3), 0)
    for x in range(3):
        b.putpixel((x, 1), 1)
    b.save(paths.setdefault("mode-1", tmp_path / "m1.png"))
    pal = Image.fromarray(np.array([[0, 0, 0, 0], [1, 1, 2, 3], [0, 0, 0, 0]], np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 255, 255, 128, 128, 128, 127, 127, 127] + [0] * (256 * 3 - 12))
    pal.save(paths.setdefault("palette", tmp_path / "mp.png"))
    return paths


@pytest.mark.parametrize("kind", ["16bit", "mode-1", "palette"])
def test_mask_readers_agree(tmp_path, kind):
    p = _mask_files(tmp_path)[kind]
    with Image.open(p) as im:
        assert im.mode == {"16bit": "I;16", "mode-1": "1", "palette": "P"}[kind]
    px, soft, m = read_mask_pixels(p), read_soft_mask(p), read_mask(p)
    assert px.dtype == soft.dtype == np.uint8 and m.dtype == bool and soft.shape == m.shape == (3, 4)
    grey = px.mean(axis=2) if px.ndim == 3 else px
    np.testing.assert_array_equal(grey, soft)
    expected = np.zeros((3, 4), bool)
    expected[1, :3] = True
    np.testing.assert_array_equal(m, expected)
    np.testing.assert_array_equal(soft > 127.5, m)
    assert set(np.unique(soft)) <= {0, 127, 128, 255}


def test_read_soft_mask_16bit_rounds_and_colour_uses_luma(tmp_path):
    Image.fromarray(np.array([[0, 257, 32767, 65535]], np.uint16)).save(tmp_path / "s16.png")
    np.testing.assert_array_equal(read_soft_mask(tmp_path / "s16.png"), [[0, 1, 127, 255]])
    Image.fromarray(np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_soft_mask(tmp_path / "rgb.png"), [[76, 29]])  # as PIL's convert("L")
    np.testing.assert_array_equal(read_mask_pixels(tmp_path / "rgb.png"), [[[255, 0, 0], [0, 0, 255]]])


@pytest.mark.parametrize("reader", [read_mask_pixels, read_soft_mask, read_mask])
def test_mask_readers_reject(tmp_path, reader):
    for path, reason in [(tmp_path / "none.png", "missing-file"), (tmp_path / "t.png", "not-an-image"),
                         (tmp_path / "cut.png", "truncated")]:
        if path.name == "t.png":
            path.write_text("hello")
        elif path.name == "cut.png":
            path.write_bytes(_png_header_only(40, 40))
        with pytest.raises(Rejected) as ei:
            reader(path)
        assert ei.value.reason == reason and ei.value.path == str(path)


# ------------------------------------------------------------------------------ resizing


@pytest.mark.parametrize("h, w, side, expected", [
    (300, 600, 200, (200, 100)),  # landscape: (width, height)
    (600, 300, 200, (100, 200)),  # portrait
    (333, 1000, 100, (100, 33)),  # rounded
    (100, 100, 250, (250, 250)),  # enlarged by default
])
def test_long_side_size(h, w, side, expected):
    assert long_side_size(h, w, side) == expected


def test_long_side_size_caps_and_clamps():
    assert long_side_size(100, 50, 400, max_scale=1.0) == (50, 100)
    assert long_side_size(100, 50, 400, max_scale=1.5) == (75, 150)
    assert long_side_size(3, 1000, 100) == (100, 1)
    assert long_side_size(3, 1000, 100, min_side=8) == (100, 8)
    assert long_side_scale(200, 800, 400) == 0.5 and scaled_size(200, 800, 0.5) == (400, 100)


@pytest.mark.parametrize("shape", [(90, 160, 3), (160, 90, 3), (160, 90)])
def test_resize_long_side_shapes(shape):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = resize_long_side(img, 64)
    assert out.dtype == np.uint8 and out.ndim == img.ndim and max(out.shape[:2]) == 64
    assert out.shape[:2] == ((36, 64) if shape[0] < shape[1] else (64, 36))


def test_resize_interpolation_area_to_shrink_linear_to_enlarge():
    img = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_long_side(img, 25), cv2.resize(img, (25, 17), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(resize_long_side(img, 150), cv2.resize(img, (150, 100), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_array_equal(resize_long_side(img, 150, interpolation=cv2.INTER_CUBIC),
                                  cv2.resize(img, (150, 100), interpolation=cv2.INTER_CUBIC))


def test_resize_long_side_no_upscaling_when_capped():
    img = np.random.default_rng(2).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    out = resize_long_side(img, 500, max_scale=1.0)
    assert out.shape == img.shape and out is not img
    np.testing.assert_array_equal(out, img)
    assert resize_long_side(img, 30, max_scale=1.0).shape == (20, 30, 3)


@pytest.mark.parametrize("side", [7, 33, 250])
def test_resized_masks_stay_binary(side):
    m = np.zeros((50, 80), bool)
    m[10:31, 17:60] = True
    b = resize_long_side(m, side, mask=True)
    assert b.dtype == bool and max(b.shape) == side and b.any()
    u = resize_long_side(m.astype(np.uint8) * 255, side, mask=True)
    assert u.dtype == np.uint8 and set(np.unique(u)) <= {0, 255}
    np.testing.assert_array_equal(u == 255, b)


def test_resize_by_takes_non_contiguous_views():
    img = np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_by(img[:, ::-1], 0.5), resize_by(img[:, ::-1].copy(), 0.5))
    assert resize_by(img, 0.01, min_side=4).shape == (4, 4, 3)


# ---------------------------------------------------------------------------- indexes


def _img(p: Path, seed: int = 0, h: int = 16, w: int = 16) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_noise(h, w, seed)).save(p)
    return p


def test_benco_round_trip_relative(tmp_path):
    a = _img(tmp_path / "data" / "img" / "a.png", 1)
    b = _img(tmp_path / "data" / "img" / "b.png", 2)
    ma = tmp_path / "data" / "mask" / "a.png"
    ma.parent.mkdir(parents=True)
    write_mask(ma, np.eye(16, dtype=bool))
    idx = tmp_path / "indexes" / "sub" / "index.json"
    write_benco_index(idx, [(a, ma), (b, None)], paths="relative")
    raw = json.loads(idx.read_text())
    assert raw == [["../../data/img/a.png", "../../data/mask/a.png"], ["../../data/img/b.png", "Negative"]]
    back = read_benco_index(idx)
    assert len(back) == 2
    assert back[0][0].resolve() == a.resolve() and back[0][1].resolve() == ma.resolve()
    assert back[1][0].resolve() == b.resolve() and back[1][1] is None
    assert back[0][0].is_file() and back[0][1].is_file()


def test_benco_absolute_by_default(tmp_path):
    a = _img(tmp_path / "a.png")
    idx = tmp_path / "sub" / "i.json"
    write_benco_index(idx, [(a, None)])
    assert json.loads(idx.read_text()) == [[a.as_posix(), "Negative"]]
    assert read_benco_index(idx) == [(a, None)]
    with pytest.raises(ValueError, match="paths"):
        write_benco_index(idx, [(a, None)], paths="rel")


def test_benco_index_loads_from_any_working_directory(tmp_path, monkeypatch):
    """Written from a relative path, read the way IMDL-BenCo reads it: paths as written, no base,
    from another working directory."""
    monkeypatch.chdir(tmp_path)
    _img(Path("ds") / "imgs" / "a.png")
    Path("ds/masks").mkdir()
    write_mask(Path("ds/masks/a.png"), np.eye(16, dtype=bool))
    write_benco_index(Path("ds/index.json"), [(Path("ds/imgs/a.png"), Path("ds/masks/a.png"))])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    [[img, mask]] = json.loads((tmp_path / "ds" / "index.json").read_text())
    assert Path(img).is_file() and Path(mask).is_file()


def test_benco_moved_absolute_index_reads_from_its_folder(tmp_path):
    a = _img(tmp_path / "one" / "ds" / "imgs" / "a.png")
    write_benco_index(tmp_path / "one" / "ds" / "index.json", [(a, None)])
    (tmp_path / "one").rename(tmp_path / "two")
    with pytest.warns(UserWarning, match="1 absolute paths do not exist"):
        back = read_benco_index(tmp_path / "two" / "ds" / "index.json")
    assert back == [(tmp_path / "two" / "ds" / "imgs" / "a.png", None)]


@pytest.mark.parametrize(
    "text",
    [
        '{"a.png": "Negative"}',
        '[["a.png"]]',
        '[["a.png", "m.png", "x.png"]]',
        '[["a.png", null]]',
        '[[1, "m.png"]]',
        '["a.png"]',
        "[[\"a.png\", ",
    ],
    ids=["dict", "short", "long", "null-mask", "int-path", "bare-string", "bad-json"],
)
def test_benco_malformed(tmp_path, text):
    idx = tmp_path / "bad.json"
    idx.write_text(text)
    with pytest.raises(ValueError):
        read_benco_index(idx)


def test_tp_gt_round_trip(tmp_path):
    src = tmp_path / "src"
    t1 = _img(src / "t1.jpg", 1)
    t2 = _img(src / "t2.png", 2)
    au = _img(src / "au1.png", 3)
    m1, m2 = src / "m1.png", src / "m2.png"
    mask1 = np.zeros((16, 16), bool)
    mask1[2:6, 3:9] = True
    write_mask(m1, mask1)
    # A soft/grey RGB mask source gets binarised on the way in.
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[8:, :] = (200, 200, 200)
    Image.fromarray(rgb).save(m2)
    root = tmp_path / "ds"
    write_tp_gt_dir(root, [(t1, m1), (t2, m2), (au, None)])
    assert sorted(p.name for p in (root / "Tp").iterdir()) == ["t1.jpg", "t2.png"]
    assert sorted(p.name for p in (root / "Gt").iterdir()) == ["t1.png", "t2.png"]
    assert [p.name for p in (root / "Au").iterdir()] == ["au1.png"]
    assert (root / "Tp" / "t1.jpg").read_bytes() == t1.read_bytes()
    back = read_tp_gt_dir(root)
    assert back == [
        (root / "Tp" / "t1.jpg", root / "Gt" / "t1.png"),
        (root / "Tp" / "t2.png", root / "Gt" / "t2.png"),
        (root / "Au" / "au1.png", None),
    ]
    np.testing.assert_array_equal(read_mask(root / "Gt" / "t1.png"), mask1)
    m2_back = read_mask(root / "Gt" / "t2.png")
    assert m2_back[8:].all() and not m2_back[:8].any()
    assert _pixels(root / "Gt" / "t2.png")[0] == "L"
    assert read_index(root) == back


def test_tp_gt_suffixes_and_non_images(tmp_path):
    root = tmp_path / "ds"
    _img(root / "Tp" / "a.jpg")
    _img(root / "Tp" / "b.png")
    _img(root / "Tp" / "c.tif")
    (root / "Tp" / "readme.txt").write_text("ignore me")
    (root / "Gt").mkdir()
    write_mask(root / "Gt" / "a_gt.png", np.ones((16, 16), bool))
    write_mask(root / "Gt" / "b_mask.png", np.ones((16, 16), bool))
    write_mask(root / "Gt" / "c-gt.png", np.ones((16, 16), bool))
    (root / "Gt" / "notes.txt").write_text("x")
    out = read_tp_gt_dir(root)
    assert out == [
        (root / "Tp" / "a.jpg", root / "Gt" / "a_gt.png"),
        (root / "Tp" / "b.png", root / "Gt" / "b_mask.png"),
        (root / "Tp" / "c.tif", root / "Gt" / "c-gt.png"),
    ]


def test_tp_without_mask_raises(tmp_path):
    root = tmp_path / "ds"
    _img(root / "Tp" / "a.jpg")
    _img(root / "Tp" / "orphan.png")
    (root / "Gt").mkdir()
    write_mask(root / "Gt" / "a.png", np.ones((16, 16), bool))
    with pytest.raises(ValueError, match="orphan.png"):
        read_tp_gt_dir(root)


def test_tp_gt_without_tp_folder(tmp_path):
    (tmp_path / "ds" / "Au").mkdir(parents=True)
    with pytest.raises(ValueError, match="Tp"):
        read_tp_gt_dir(tmp_path / "ds")


def test_tp_gt_round_trip_stem_ending_in_gt(tmp_path):
    src = tmp_path / "src"
    t = _img(src / "photo_gt.jpg")
    m = src / "m.png"
    write_mask(m, np.ones((16, 16), bool))
    root = tmp_path / "ds"
    write_tp_gt_dir(root, [(t, m)])
    assert read_tp_gt_dir(root) == [(root / "Tp" / "photo_gt.jpg", root / "Gt" / "photo_gt.png")]


def test_read_index_dispatch(tmp_path):
    a = _img(tmp_path / "a.png")
    idx = tmp_path / "i.json"
    write_benco_index(idx, [(a, None)])
    assert [(p.resolve(), m) for p, m in read_index(idx)] == [(a.resolve(), None)]
    assert [(p.resolve(), m) for p, m in read_index(str(idx))] == [(a.resolve(), None)]
    root = tmp_path / "ds"
    _img(root / "Au" / "x.png")
    (root / "Tp").mkdir()
    assert read_index(root) == [(root / "Au" / "x.png", None)]


# --------------------------------------------------------------------- pair manifests


def _record(i: int = 0) -> PairRecord:
    return PairRecord(
        id=f"p{i}",
        source="reddit",
        forged=f"forged/p{i}.jpg",
        authentic=f"authentic/p{i}.jpg",
        authentic_registered=None,
        overlap="overlap/p0.png",
        transform=[[1.0, 0.0, 2.5], [0.0, 1.0, -3.0], [0.0, 0.0, 1.0]],
        transform_model="homography",
        forged_size=(640, 480),
        authentic_size=(1280, 960),
        forged_sha256="a" * 64,
        authentic_sha256="b" * 64,
        origin={"url": "http://example.invalid/x", "post": "42"},
        inliers=np.int64(57),
        overlap_fraction=np.float32(0.75),
        residual=1.25,
        phash="ffee",
        flags=["exif-rotated"],
    )


def test_pair_record_round_trip():
    r = _record()
    d = json.loads(r.to_json())
    assert d["inliers"] == 57 and d["overlap_fraction"] == 0.75
    assert d["forged_size"] == [640, 480]
    back = PairRecord.from_dict(d)
    assert back.forged_size == (640, 480) and isinstance(back.forged_size, tuple)
    assert back.authentic_size == (1280, 960)
    assert back == PairRecord(**{**r.__dict__, "inliers": 57, "overlap_fraction": 0.75})


def test_pair_record_defaults_round_trip():
    d = json.loads(_record().to_json())
    for k in ("inliers", "overlap_fraction", "residual", "phash", "flags"):
        del d[k]
    r = PairRecord.from_dict(d)
    assert (r.inliers, r.overlap_fraction, r.residual, r.phash, r.flags) == (0, 0.0, None, "", [])
    assert PairRecord.from_dict(json.loads(r.to_json())) == r


def test_jsonl_writer_atomic(tmp_path):
    out = tmp_path / "sub" / "pairs.jsonl"
    w = JsonlWriter(out)
    w.write(_record(0))
    w.write({"plain": np.int32(3)})
    assert not out.exists()
    assert (tmp_path / "sub" / "pairs.jsonl.tmp").exists()
    assert w.count == 2
    w.close()
    w.close()  # idempotent
    assert out.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["pairs.jsonl"]
    rows = read_jsonl(out)
    assert rows[1] == {"plain": 3}
    assert PairRecord.from_dict(rows[0]).id == "p0"


def test_jsonl_writer_context_and_read_pairs(tmp_path):
    with JsonlWriter(tmp_path / "pairs.jsonl") as w:
        for i in range(3):
            w.write(_record(i))
        assert not (tmp_path / "pairs.jsonl").exists()
    pairs = read_pairs(tmp_path)
    assert [p.id for p in pairs] == ["p0", "p1", "p2"]
    assert pairs[0].forged_size == (640, 480)
    assert [p.id for p in read_pairs(tmp_path / "pairs.jsonl")] == ["p0", "p1", "p2"]
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.jsonl"]


def test_jsonl_writer_exception_leaves_nothing(tmp_path):
    out = tmp_path / "pairs.jsonl"
    with pytest.raises(RuntimeError, match="boom"), JsonlWriter(out) as w:
        w.write({"a": 1})
        raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_jsonl_writer_exception_keeps_previous_file(tmp_path):
    out = tmp_path / "pairs.jsonl"
    out.write_text('{"old": 1}\n')
    with pytest.raises(RuntimeError), JsonlWriter(out) as w:
        w.write({"new": 1})
        raise RuntimeError("boom")
    assert read_jsonl(out) == [{"old": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.jsonl"]


def test_read_jsonl_missing_and_blank_lines(tmp_path):
    assert read_jsonl(tmp_path / "nothing.jsonl") == []
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n\n   \n{"b": 2}\n')
    assert read_jsonl(p) == [{"a": 1}, {"b": 2}]


def test_read_pairs_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="collect"):
        read_pairs(tmp_path)
    with pytest.raises(FileNotFoundError, match="collect"):
        read_pairs(tmp_path / "other.jsonl")


# ----------------------------------------------------------------------- atomic writes


def test_write_json_success_no_temp(tmp_path):
    p = tmp_path / "deep" / "out.json"
    write_json(p, {"n": np.int64(3), "f": np.float32(0.5), "a": np.arange(3), "p": Path("x/y")})
    assert json.loads(p.read_text()) == {"n": 3, "f": 0.5, "a": [0, 1, 2], "p": "x/y"}
    assert p.read_text().endswith("\n")
    assert [q.name for q in p.parent.iterdir()] == ["out.json"]


def test_write_json_unserialisable_leaves_nothing(tmp_path):
    p = tmp_path / "out.json"
    with pytest.raises(TypeError):
        write_json(p, {"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_write_json_overwrites(tmp_path):
    p = tmp_path / "out.json"
    write_json(p, [1])
    write_json(p, [2])
    assert json.loads(p.read_text()) == [2]
    assert [q.name for q in tmp_path.iterdir()] == ["out.json"]


def test_atomic_path_failure_leaves_nothing(tmp_path):
    p = tmp_path / "out.png"
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        assert tmp.parent == tmp_path and tmp != p
        tmp.write_bytes(b"partial")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_failure_keeps_old_file(tmp_path):
    p = tmp_path / "out.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        tmp.write_text("new")
        assert p.read_text() == "old"
        raise RuntimeError("interrupted")
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_success(tmp_path):
    p = tmp_path / "out.txt"
    with atomic_path(p) as tmp:
        tmp.write_text("done")
        assert not p.exists()
    assert p.read_text() == "done"
    assert [q.name for q in tmp_path.iterdir()] == ["out.txt"]
