"""Where a pipeline lives: the workspace root, its params, and the size workspaces' marker."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from .errors import UsageError

REPO_MARKER = ".webiml-repo"  # in a size workspace: the relative path back to the repository
SCRATCH = "scratch"  # interactive notebook runs write here, never over the pipeline's outputs


def find_root(start: str | os.PathLike | None = None) -> Path:
    """The repository or size workspace containing ``start`` (default: the working directory):
    the nearest folder, ``start`` itself or above, holding both ``dvc.yaml`` and ``params.yaml``."""
    here = Path(start or os.getcwd()).resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").is_file() and (d / "params.yaml").is_file():
            return d
    raise FileNotFoundError(f"no dvc.yaml + params.yaml in {here} or above: not inside a webiml workspace")


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    """A params (or any YAML settings) file as a mapping; a file that is not YAML, or is YAML but
    not a mapping (a list, a scalar, a ``!!python`` tag: never constructed), is a
    :class:`UsageError` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: must be a mapping of sections, got {type(data).__name__}")
    return data


def overlay(base: dict, over: dict) -> dict:
    """Deep-merge ``over`` onto ``base`` (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = overlay(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def present(path: str | os.PathLike | None) -> bool:
    """Whether a data path is there: a file, or a folder with something in it (an absent
    ``paths.real`` folder is linked as an empty one)."""
    if not path:
        return False
    p = Path(path)
    return p.is_file() or (p.is_dir() and any(p.iterdir()))
