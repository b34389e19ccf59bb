"""Where a run may read and write.

Ids and relative paths read from files (manifests, shards, indexes, CSVs) are checked here before
they name a file: an id is one safe file name, a relative path stays under its folder. And a run
removes only what it wrote: each folder a command writes into holds a marker file
(:data:`MARKER`) that names the entries the command wrote there; ``--overwrite`` removes those and
nothing else, and an entry of the same name that the marker does not give to the command (a
user's file) makes the run stop instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterable

from . import io

MARKER = ".webiml-owned.json"
MAX_ID = 200  # characters: leaves room for a suffix and an extension within a 255-byte file name
_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_BAD_RUN = re.compile(r"[^A-Za-z0-9._-]+")


class UnsafePath(ValueError):
    """An id or path read from a file that would name a file outside where it belongs."""


# ------------------------------------------------------------------------------- ids and paths


def make_id(prefix: str, name: str) -> str:
    """``<prefix>-<name>`` with every run of other characters than letters, digits, ``.``, ``_``
    and ``-`` made one ``_``; a name too long for a file name is cut and given a hash of the
    whole, so that ids stay distinct."""
    name = _BAD_RUN.sub("_", name)
    room = MAX_ID - 10 - len(prefix) - 1  # 10: room for unique_ids' "-<k>" suffixes
    if len(name) > room:
        name = f"{name[: room - 13]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return f"{prefix}-{name}"


def check_id(value: object, what: str = "id") -> str:
    """``value`` when it is safe as one file name (letters, digits, ``.``, ``_``, ``-``; not
    starting with ``.``; at most :data:`MAX_ID` characters), else :class:`UnsafePath`."""
    if not isinstance(value, str) or len(value) > MAX_ID or not _ID.fullmatch(value):
        raise UnsafePath(f"{what} {value!r} is not a safe file name (letters, digits, '.', '_', '-', "
                         f"not starting with '.', at most {MAX_ID} characters)")
    return value


def check_relpath(value: object, what: str = "path") -> str:
    """``value`` when it is a relative path that stays under its folder (no ``..``, not absolute,
    no drive or backslash), else :class:`UnsafePath`."""
    ok = isinstance(value, str) and value and "\\" not in value and "\0" not in value
    if ok:
        p = PurePosixPath(value)
        ok = not p.is_absolute() and ".." not in p.parts and not PureWindowsPath(value).drive
    if not ok:
        raise UnsafePath(f"{what} {value!r} is not a relative path inside its folder")
    return value


def inside(root: str | os.PathLike, path: str | os.PathLike, what: str = "path") -> Path:
    """``root / path`` with symlinks resolved, when it lies in ``root`` (also resolved); else
    :class:`UnsafePath`. ``path`` may be absolute."""
    base = Path(root).resolve()
    p = (Path(root) / path).resolve()
    if p != base and base not in p.parents:
        raise UnsafePath(f"{what} {str(path)!r} resolves to {p}, outside {root}")
    return p


# ---------------------------------------------------------------------------------- ownership


def _owners(folder: Path) -> dict[str, str]:
    """entry name -> the command that wrote it, from ``folder``'s marker ({} without one)."""
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    written = data.get("written_by") if isinstance(data, dict) else None
    return {k: v for k, v in written.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(written, dict) else {}


def claim(owner: str, folders: dict[str | os.PathLike, Iterable[str]]) -> None:
    """Make each folder (created when missing) ready for command ``owner`` to write the entries
    named for it, and record them in its marker (before they exist, so that a crash leaves them
    recorded). Refuses (:class:`FileExistsError`, before any folder is touched) when one of them is
    already there but was not written by ``owner``; nothing is removed here (see :func:`remove`)."""
    todo = [(Path(f), list(names)) for f, names in folders.items()]
    for folder, names in todo:
        assert all(n and "/" not in n and n not in (".", "..", MARKER) for n in names), names
        try:
            a_file = folder.exists() and not folder.is_dir()
        except OSError as e:  # a name too long, a folder we may not enter
            raise ValueError(f"{folder}: cannot be an output folder ({e.strerror or e})") from None
        if a_file:  # as mkdir says it
            raise FileExistsError(f"{folder} is a file, not a folder")
        owners = _owners(folder)
        foreign = [n for n in names if os.path.lexists(folder / n) and (owners.get(n) != owner or (folder / n).is_symlink())]
        if foreign:
            raise FileExistsError(
                f"{folder} already holds {', '.join(foreign)}, not written by webiml {owner} (no record in {MARKER}); "
                "move it away or choose another folder (webiml never deletes what it did not write)")
    for folder, names in todo:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise
        except OSError as e:
            raise ValueError(f"{folder}: cannot be created ({e.strerror or e})") from None
        owners = _owners(folder)
        if any(owners.get(n) != owner for n in names):
            io.write_json(folder / MARKER, {"written_by": dict(sorted({**owners, **{n: owner for n in names}}.items()))})


def remove(folder: str | os.PathLike, owner: str, names: Iterable[str]) -> None:
    """Delete the entries ``names`` of ``folder`` that its marker says ``owner`` wrote (others
    stay)."""
    folder = Path(folder)
    owners = _owners(folder)
    for n in names:
        p = folder / n
        if owners.get(n) != owner or p.is_symlink():
            continue
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
