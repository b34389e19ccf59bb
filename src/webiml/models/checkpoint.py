"""Checkpoints that carry their model's class and config, so any stage can rebuild the model.

A checkpoint is data, never code: it is read with ``torch.load(..., weights_only=True)`` (tensors,
numbers, strings, lists, tuples and dicts only), and the model and config classes it names are
looked up by name among the classes its reader accepts (``load_checkpoint(..., classes=...)``: the
detectors for ``webiml.infer``, the CAAAv2 networks for the annotators); nothing named in a file is
ever imported. Checkpoints keep naming their classes ``"module:Qualname"`` (as they
always have); the ``Qualname`` is what is looked up. A checkpoint that only loads by running its
pickle (written by other code) can be re-saved as data with ``webiml convert-checkpoint``, the one
place that runs a pickle, on the user's explicit command.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn as nn

from .. import io
from ..config import from_dict
from ..errors import DataError, UsageError

CONVERT_HINT = "if it is a checkpoint from a source you trust, re-save it with `webiml convert-checkpoint IN OUT`"

#: model classes registered by code outside the package (e.g. tests): name -> (model class, config class)
_REGISTERED: dict[str, tuple[type, type]] = {}


class CheckpointError(DataError):
    """A file that is not a checkpoint this code can load as data."""


def register_model(model_cls: type[nn.Module], config_cls: type) -> None:
    """Allow checkpoints of ``model_cls`` (built as ``model_cls(config_cls(...))``) to be loaded."""
    _REGISTERED[model_cls.__qualname__] = (model_cls, config_cls)


def model_classes(classes: Iterable[tuple[type, type]] = ()) -> dict[str, tuple[type, type]]:
    """The allow-list of one reader: model class name -> (model class, its config dataclass), for
    ``classes`` and the classes :func:`register_model` added."""
    return {**_REGISTERED, **{m.__qualname__: (m, c) for m, c in classes}}  # a registered class never replaces ours


def _spec(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def plain(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` as what ``torch.load(weights_only=True)`` reads back: numpy scalars become Python
    numbers, numpy arrays tensors, paths strings; anything else that is not a tensor, number,
    string, None, list, tuple or dict is an error (found when saving, not when loading). What needs
    no change is returned as it is (a state dict keeps its ``_metadata``)."""
    if isinstance(obj, np.generic):  # before float: np.float64 is one, and pickles as a numpy call
        return plain(obj.item(), where)
    if obj is None or type(obj) in (bool, int, float, str) or isinstance(obj, (torch.Tensor, torch.Size, torch.dtype, torch.device)):
        return obj
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        return torch.from_numpy(obj.copy())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        new = {k: plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
        if all(new[k] is v for k, v in obj.items()):
            return obj
        out = copy.copy(obj)
        out.update(new)
        return out
    if isinstance(obj, (list, tuple)):
        new = [plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if all(a is b for a, b in zip(new, obj)):
            return obj
        return new if isinstance(obj, list) else tuple(new)
    raise TypeError(f"{where}: a {type(obj).__name__} cannot be saved as checkpoint data")


def save_state(path: str | Path, state: dict) -> None:
    """Write ``state`` (made :func:`plain`) atomically with ``torch.save``."""
    state = plain(state)
    with io.atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_state(path: str | Path, map_location: str | torch.device = "cpu", what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``: a file that needs its pickle run to load (it names
    code, or objects other than tensors and plain data) or is no PyTorch file is a
    :class:`CheckpointError`, and nothing in it runs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with warnings.catch_warnings():  # the unpickler's notes on odd files: the error says what matters
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        code = re.search(r"GLOBAL ([\w.]+)", str(e))
        if code:
            raise CheckpointError(f"{path}: refused: loading this {what} would call {code.group(1)}, which is never done; "
                                  f"{CONVERT_HINT}") from None
        detail = next((ln for ln in lines if ln.startswith("Unsupported")), lines[-1] if lines else "")
        raise CheckpointError(f"{path}: not a {what} that loads as data ({detail.rstrip('.')}): a damaged file, or "
                              f"one written by other code; {CONVERT_HINT}") from None
    except (RuntimeError, EOFError, ValueError, AttributeError, ImportError, IndexError, KeyError, TypeError) as e:
        why = "empty file" if path.stat().st_size == 0 else " ".join(str(e).split())[:200] or type(e).__name__
        raise CheckpointError(f"{path}: not a PyTorch {what} ({why})") from None


def save_checkpoint(path: str | Path, model: nn.Module, config: Any, extra: dict | None = None) -> None:
    """Write ``{class, config, config_class, state_dict, extra}``; ``config`` is the model's config
    dataclass; ``extra`` is made :func:`plain` (it must load as data)."""
    save_state(path, {
        "class": _spec(type(model)),
        "config": dataclasses.asdict(config),
        "config_class": _spec(type(config)),
        "state_dict": model.state_dict(),
        "extra": extra or {},
    })


def _lookup(path: Path, payload: dict, known: dict[str, tuple[type, type]]) -> tuple[type, type]:
    spec, cfg_spec = payload.get("class"), payload.get("config_class")
    if not (isinstance(spec, str) and isinstance(cfg_spec, str)):
        raise CheckpointError(f"{path}: not a webiml model checkpoint (no model class and config class in it)")
    name = spec.rpartition(":")[2]
    if name not in known:
        raise CheckpointError(f"{path}: refused: model class {spec!r} is not one of the models read here "
                              f"({', '.join(sorted(known))})")
    model_cls, cfg_cls = known[name]
    if cfg_spec.rpartition(":")[2] != cfg_cls.__qualname__:
        raise CheckpointError(f"{path}: refused: config class {cfg_spec!r} does not go with {name} "
                              f"(expected {cfg_cls.__qualname__})")
    return model_cls, cfg_cls


def _check_encoder(path: Path, cfg: Any) -> None:
    """A checkpoint's encoder must be a timm architecture built here (no hub download)."""
    name = getattr(cfg, "encoder", None)
    if name is None:
        return
    import timm

    if not isinstance(name, str) or ":" in name or "/" in name or not timm.is_model(name):
        raise CheckpointError(f"{path}: refused: encoder {name!r} is not a timm architecture")


def load_checkpoint(path: str | Path, classes: Iterable[tuple[type, type]] = (), map_location: str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model (random-free: weights come from the file) and return it in eval mode, with
    the checkpoint's ``extra``. ``classes``: the (model class, config class) pairs this reader
    accepts (:func:`model_classes`); a checkpoint naming any other class is refused."""
    path = Path(path)
    payload = read_state(path, map_location)
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError(f"{path}: not a webiml model checkpoint (a {type(payload).__name__}"
                              f"{' without state_dict' if isinstance(payload, dict) else ''})")
    model_cls, cfg_cls = _lookup(path, payload, model_classes(classes))
    config = payload.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its config is not a mapping")
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    try:
        cfg = from_dict(cfg_cls, {k: v for k, v in config.items() if k in fields}, f"{path.name} config")
    except (UsageError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad model config: {e}") from None
    # The encoder's pretrained weights are inside the state dict: do not load them again.
    if hasattr(cfg, "weights"):
        cfg = dataclasses.replace(cfg, weights="none")
    _check_encoder(path, cfg)
    state = payload["state_dict"]
    if not (isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise CheckpointError(f"{path}: its state_dict is not a mapping of names to tensors")
    try:
        model = model_cls(cfg)
        model.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: its weights do not fit its {model_cls.__qualname__} config: "
                              f"{' '.join(str(e).split())[:300]}") from None
    model.eval()
    extra = payload.get("extra", {})
    return model, extra if isinstance(extra, dict) else {}


def convert_checkpoint(src: str | Path, dst: str | Path) -> dict:
    """Re-save ``src`` so it loads as data: RUNS THE PICKLE OF ``src`` (``weights_only=False``).

    Only for a file from a trusted source, on the user's explicit command. The payload is made
    :func:`plain` (numpy values become numbers and tensors); anything else that is not data is an
    error and nothing is written. Returns what was written (keys and model class)."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"checkpoint not found: {src}")
    if dst.exists() and dst.resolve() == src.resolve():
        raise UsageError(f"{dst}: the output must be another file than the input")
    if dst.is_dir():
        raise IsADirectoryError(f"{dst}: is a folder; give the output file's path")
    payload = torch.load(src, map_location="cpu", weights_only=False)
    if isinstance(payload, dict) and dataclasses.is_dataclass(payload.get("config")) and not isinstance(payload["config"], type):
        payload["config"] = dataclasses.asdict(payload["config"])  # a config saved as its object: its fields
    try:
        save_state(dst, payload)
    except TypeError as e:
        raise DataError(f"{src}: cannot be re-saved as data: {e}") from None
    read_state(dst)  # it loads as data now
    return {"keys": sorted(payload) if isinstance(payload, dict) else [], "class": payload.get("class") if isinstance(payload, dict) else None}
