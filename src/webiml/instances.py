"""Images with object instance masks, the raw material of Object Jitter (``jitter.object_jitter``).

Three sources: a COCO instances JSON (read with pycocotools), the bundled offline photos that carry
instance masks, and object-like synthetic masks (Bézier blobs on textured points) for photos
without any.
"""

from __future__ import annotations

import contextlib
import io as _stdio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from . import io, synth

INSTANCE_SOURCES = ("coco", "photos", "synthetic")


@dataclass
class InstanceImage:
    """An RGB image (uint8 ``HxWx3``) and its instance masks (bool ``HxW`` each)."""

    name: str
    rgb: np.ndarray = field(repr=False)
    masks: tuple[np.ndarray, ...] = field(repr=False)


def _load_coco(annotations: str | Path) -> COCO:
    path = Path(annotations)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: COCO annotation file does not exist")
    dataset = io.read_json(path)
    if not isinstance(dataset, dict) or not isinstance(dataset.get("images"), list):
        raise ValueError(f"{path}: not a COCO instances file (no 'images' list)")
    dataset.setdefault("annotations", [])
    _check_coco(dataset, path)
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(_stdio.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _check_coco(dataset: dict, path: Path) -> None:
    """Refuse, naming the entry, what pycocotools would trip over: ids that are not numbers or
    strings, images without a file name or a positive size."""

    def is_id(v) -> bool:
        return isinstance(v, (int, str)) and not isinstance(v, bool)

    if not isinstance(dataset["annotations"], list):
        raise ValueError(f"{path}: 'annotations' must be a list")
    for i, im in enumerate(dataset["images"]):
        if not (isinstance(im, dict) and is_id(im.get("id")) and isinstance(im.get("file_name"), str)
                and all(isinstance(im.get(k), int) and not isinstance(im.get(k), bool) and im[k] > 0 for k in ("width", "height"))):
            raise ValueError(f"{path}: images[{i}] needs an 'id' (a number or a string), a 'file_name' and a positive "
                             f"'width' and 'height'; got {str(im)[:120]}")
    keys = ("id", "image_id") + (("category_id",) if "categories" in dataset else ())
    for i, ann in enumerate(dataset["annotations"]):
        if not (isinstance(ann, dict) and all(is_id(ann.get(k)) for k in keys)):
            raise ValueError(f"{path}: annotations[{i}] needs {', '.join(map(repr, keys))} (numbers or strings); "
                             f"got {str(ann)[:120]}")


def _ann_mask(ann: dict, h: int, w: int) -> np.ndarray:
    """Rasterise one annotation (polygons, compressed or uncompressed RLE) to a bool ``HxW``."""
    seg = ann["segmentation"]
    if isinstance(seg, list):
        # pycocotools reads a 4-number "polygon" as a box; COCO has such degenerate polygons
        polys = [p for p in seg if len(p) >= 6 and len(p) % 2 == 0]
        if not polys:
            return np.zeros((h, w), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
    elif isinstance(seg["counts"], list):
        rle = mask_utils.frPyObjects(seg, h, w)
    else:
        rle = seg
    return mask_utils.decode(rle).astype(bool)


def coco_instances(
    annotations: str | Path,
    image_dir: str | Path,
    limit: int | None = None,
    min_area: int = 256,
    rejected: list | None = None,
) -> Iterator[InstanceImage]:
    """Images of a COCO instances JSON with their non-crowd instance masks, in image-id order.

    Instances with fewer than ``min_area`` mask pixels are dropped, and images left without any
    are skipped. Images that cannot be read (``io.read_image``) or whose size disagrees with the
    JSON are appended to ``rejected`` as ``{path, reason, detail}`` and skipped. At most ``limit``
    images are yielded. Raises ``FileNotFoundError``/``ValueError`` for a missing or malformed JSON.
    """
    coco = _load_coco(annotations)
    image_dir = Path(image_dir)
    n = 0
    for img_id in sorted(coco.imgs, key=lambda k: (isinstance(k, str), k)):
        if limit is not None and n >= limit:
            return
        meta = coco.imgs[img_id]
        h, w = int(meta["height"]), int(meta["width"])
        masks = []
        for ann in coco.imgToAnns.get(img_id, []):
            if ann.get("iscrowd", 0):
                continue
            try:
                m = _ann_mask(ann, h, w)
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{annotations}: annotation {ann.get('id')} has a malformed segmentation ({e})") from None
            if m.sum() >= min_area:
                masks.append(m)
        if not masks:
            continue
        path = image_dir / meta["file_name"]
        try:
            rgb, _ = io.read_image(path)
            if rgb.shape[:2] != (h, w):
                raise io.Rejected("size-mismatch", f"image {rgb.shape[1]}x{rgb.shape[0]} vs annotation {w}x{h}", path)
        except io.Rejected as e:
            if rejected is not None:
                rejected.append({"path": str(path), "reason": e.reason, "detail": e.detail})
            continue
        n += 1
        yield InstanceImage(str(meta["file_name"]), rgb, tuple(masks))


def photo_instances(split: str = "train") -> list[InstanceImage]:
    """The bundled offline photos of ``split`` that carry instance masks."""
    from .photos import load_photos

    return [InstanceImage(p.name, p.rgb, tuple(p.instances)) for p in load_photos(split) if p.instances]


def synthetic_instances(photos: Sequence, rng: np.random.Generator, per_photo: int = 4) -> list[InstanceImage]:
    """``per_photo`` object-like masks (``synth.object_from``: Bézier blobs centred on textured
    points, ``alpha > 0.5``) on each photo that has no instance masks of its own.

    ``photos`` are :class:`webiml.photos.Photo` or anything with ``name`` and ``rgb``.
    """
    if per_photo < 1:
        raise ValueError(f"per_photo must be >= 1, got {per_photo}")
    out = []
    for p in photos:
        if getattr(p, "instances", ()):
            continue
        masks = tuple(m for m in (synth.object_from(p.rgb, rng) > 0.5 for _ in range(per_photo)) if m.any())
        if masks:
            out.append(InstanceImage(p.name, p.rgb, masks))
    return out


def instance_source(kind: str, **kw) -> Iterator[InstanceImage] | list[InstanceImage]:
    """Dispatch to :func:`coco_instances`, :func:`photo_instances` or :func:`synthetic_instances`."""
    sources = {"coco": coco_instances, "photos": photo_instances, "synthetic": synthetic_instances}
    if kind not in sources:
        raise ValueError(f"unknown instance source {kind!r}; expected one of {INSTANCE_SOURCES}")
    return sources[kind](**kw)
