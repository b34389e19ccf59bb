"""Numbers in README.md and docs/ that describe a run, generated from that run's metrics files.

A markdown file holds, wherever it quotes a run,

    <!-- facts: annotation-quality -->
    (generated; never typed)
    <!-- /facts -->

and ``python -m webiml.report.facts [FILE ...]`` (``make repro`` runs it last) rewrites what lies between
the markers from the workspace's ``reports/metrics/``, stamped with the size and the commit whose
``dvc.lock`` holds those outputs. :data:`BLOCKS` names what a block can show; an unknown name is an
error. Numbers measured once and not regenerated belong in ``docs/history.md``, dated.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
from pathlib import Path
from typing import Callable, Iterable

from ..workspace import REPO_MARKER
from .results import git, size_name

DOCS = ("README.md", "docs/*.md")  # the files rewritten when none is named
_OPEN, _CLOSE = re.compile(r"^<!-- facts: ([\w-]+) -->$", re.M), re.compile(r"^<!-- /facts -->$", re.M)  # markers are whole lines
_BLOCK = re.compile(r"^(<!-- facts: ([\w-]+) -->\n)(.*?)^(<!-- /facts -->)$", re.S | re.M)
_METHODS = {"caaa": "CAAAv2 (`route: auto`)", "caaa-classifier": "CAAAv2, routed by the pair classifier alone",
            "unified": "unified baseline (one CIML model, the DASS recipe)", "naive": r"naive baseline (resize, \|difference\|, blur, threshold)"}


def _f(x, d: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{d}f}"


def _reasons(counts: dict | None) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted((counts or {}).items())) or "none"


class MissingMetrics(KeyError):
    """What a block reads is not in the workspace (its stage has not run there); the argument names it."""


class Metrics:
    """A workspace's ``reports/metrics/<stage>.json``, read on demand; a missing stage raises
    :class:`MissingMetrics` naming it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._cache: dict[str, dict] = {}

    def __getitem__(self, stage: str) -> dict:
        if stage not in self._cache:
            p = self.root / "reports" / "metrics" / f"{stage}.json"
            if not p.is_file():
                raise MissingMetrics(f"`reports/metrics/{stage}.json`")
            self._cache[stage] = json.loads(p.read_text())
        return self._cache[stage]


def annotation_quality(m: Metrics) -> str:
    """Every annotation method against the hidden truth of the synthetic corpus, per category."""
    q = m["filter"]["quality"]
    spg = q["caaa"]["per_category"].get("spg", {})
    head = ["annotations vs truth (mean IoU / F1)", *(f"{g.upper()} (n={q['caaa']['per_category'].get(g, {}).get('n', 0)})" for g in ("spg", "sdg")),
            f"all (n={q['caaa']['overall']['n']})", "SPG, visible truth", f"SPG, share of the ceiling ({_f(spg.get('ceiling_iou'))})",
            "refused by the guard"]
    rows = []
    for name, s in q.items():
        cat, o = s.get("per_category", {}), s["overall"]
        cells = [f"{_f(cat[g]['mean_iou'])} / {_f(cat[g]['mean_f1'])}" if g in cat else "–" for g in ("spg", "sdg")]
        share = cat.get("spg", {}).get("share_of_ceiling")
        rows.append([_METHODS.get(name, name), *cells, f"{_f(o['mean_iou'])} / {_f(o['mean_f1'])}",
                     _f(cat.get("spg", {}).get("mean_visible_iou")), "n/a" if share is None else f"{share:.0%}", o.get("n_refused", 0)])
    return _table(head, rows)


def qes(m: Metrics) -> str:
    """What QES and the label guard keep, and how well QES ranks the labels."""
    f = m["filter"]
    s, ds = f["qes"], f["dataset"]
    web = f.get("per_source", {}).get("web-pairs")
    text = (f"Spearman(QES, true IoU) = **{_f(s['spearman'], 2)}** on the synthetic corpus; the kept masks' mean IoU is "
            f"**{_f(s['kept']['mean_iou'], 2)}** against **{_f(s['dropped']['mean_iou'], 2)}** for the dropped ones "
            f"({s['kept']['n']} of {s['kept']['n'] + s['dropped']['n']} kept). Over the whole corpus QES > {ds['threshold']} alone keeps "
            f"{ds.get('kept_by_qes_alone', 'n/a')} of {ds['n']} labels and the dataset {ds['kept']}: the guard refused "
            f"{_reasons(ds.get('refused_by_guard'))} in all, of which {_reasons(ds.get('removed_by_guard'))} among the labels QES keeps.")
    if web:
        text += f" Of the {web['n']} real web pairs collected, {web['kept']} labels are kept (dropped: {_reasons(web.get('dropped_by_reason'))})."
    return text


def real_pairs(m: Metrics) -> str:
    """Each real set of check_real (COVERAGE, NoSo): every method against the truth and the ceiling,
    clean and after the web degradations."""
    from ..evaluate.real import summary_markdown

    c = m["check_real"]
    sets = [k for k, v in c.items() if isinstance(v, dict) and "quality" in v]
    if not sets:
        return "No real set with truth was present (`paths.real`): check_real skipped them."
    return "\n\n".join(summary_markdown(s, c[s]) for s in sets)


def registration(m: Metrics) -> str:
    """How collect registered the corpus, and how well: the estimated map against the true one on
    synthetic SPG pairs, and what differs outside the edit, also on the real sets of check_real."""
    col = m["collect"]
    rq = col.get("registration_quality", {})
    rows = []
    if rq.get("error_px"):
        e = rq["error_px"]
        rows.append(["synthetic SPG: error of the estimated map vs the true one (px)", e["n"], _f(e["median"], 2), _f(e["p95"], 2), _f(e["max"], 2)])
    sources = [("synthetic", rq)]
    try:
        sources += [(k, v.get("registration", {})) for k, v in m["check_real"].items() if isinstance(v, dict) and "registration" in v]
    except MissingMetrics:
        pass
    for name, r in sources:
        d = r.get("outside_diff")
        if d and d.get("n"):
            rows.append([rf"{name}: median \|forged − registered\| outside the truth mask (0–255)", d["n"], _f(d["median"], 1), _f(d["p95"], 1),
                         _f(d["max"], 1)])
    counts = ", ".join(f"{v} {k}" for k, v in col.get("registration", {}).items())
    return (f"{col['n_accepted']} of {col['n_candidates']} pairs collected (rejected: {_reasons(col.get('rejected_by_reason'))}); "
            f"registration: {counts or 'none'}; {_f(col.get('seconds_total'), 1)} s, {_f(col.get('pairs_per_second'), 1)} pairs/s.\n\n" + _table(["check", "pairs", "median", "p95", "max"], rows))


def web_pairs(m: Metrics) -> str:
    """The real web pairs through collect and the filter."""
    col = m["collect"]
    src = col.get("per_source", {}).get("web-pairs")
    if not src:
        return "The real web pairs were not present (`paths.real.web_pairs`)."
    kept = m["filter"].get("per_source", {}).get("web-pairs", {})
    return (f"{src.get('accepted', 0)} of {src.get('accepted', 0) + src.get('rejected', 0)} real web pairs collected (the corpus's rejections "
            f"by reason: {_reasons(col.get('rejected_by_reason'))}); {kept.get('kept', 0)} CAAAv2 labels kept, dropped by reason: "
            f"{_reasons(kept.get('dropped_by_reason'))}.")


def stage_times(root: str | Path, here_only: bool = False) -> dict[str, float]:
    """``{stage: seconds}`` of each stage's last run: papermill's duration of its executed notebook in
    ``reports/notebooks/`` (matrix items summed). ``here_only``: only notebooks executed in this
    workspace, not those restored from another's run cache."""
    folder = (Path(root) / "reports" / "notebooks").resolve()
    times: dict[str, float] = {}
    for nb in sorted(folder.glob("*.ipynb")):
        try:
            meta = json.loads(nb.read_text())["metadata"]["papermill"]
            duration = float(meta["duration"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if here_only and Path(str(meta.get("output_path", ""))).parent != folder:
            continue
        stage = nb.stem.split("_", 1)[-1].split("@")[0]  # 05_train_webiml@webiml-0 -> train_webiml
        times[stage] = times.get(stage, 0.0) + duration
    return times


def times_text(times: dict[str, float]) -> str:
    """``**44.4 min** ...: train_annotators 10.2, ..., report 26 s`` (minutes unless marked)."""
    parts = ", ".join(f"{k} {v / 60:.1f}" if v >= 60 else f"{k} {v:.0f} s" for k, v in sorted(times.items(), key=lambda kv: -kv[1]))
    return f"**{sum(times.values()) / 60:.1f} min** of notebook time on the machine that ran them, in minutes: {parts}"


def run_time(m: Metrics) -> str:
    """What each stage's last run took, and the sum."""
    times = stage_times(m.root)
    if not times:
        raise MissingMetrics("`reports/notebooks/`")
    return (f"The stages' last runs took {times_text(times)} (papermill's duration of each notebook in `reports/notebooks/`; "
            "DVC's checks and the kernel starts come on top).")


def _table(head: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


#: name -> (renderer, the metrics files it reads)
BLOCKS: dict[str, tuple[Callable[[Metrics], str], tuple[str, ...]]] = {
    "annotation-quality": (annotation_quality, ("filter",)),
    "qes": (qes, ("filter",)),
    "registration": (registration, ("collect", "check_real")),
    "real-pairs": (real_pairs, ("check_real",)),
    "web-pairs": (web_pairs, ("collect", "filter")),
    "run-time": (run_time, ()),
}


def lock_commit(root: str | Path) -> str:
    """Where the workspace's outputs are recorded: ``the dvc.lock of commit abc1234``, or a note when
    the lock differs from its last commit (a run not yet committed) or is not in git (a size workspace)."""
    root = Path(root).resolve()
    if (root / REPO_MARKER).is_file():
        head = git(root, "rev-parse", "--short", "HEAD")
        return f"a size workspace made from commit `{head}`" if head else "a size workspace"
    commit = git(root, "log", "-1", "--format=%h", "--", "dvc.lock")
    if not commit:
        return "a `dvc.lock` not in git"
    changed = git(root, "status", "--porcelain", "--", "dvc.lock")
    return f"the `dvc.lock` of commit `{commit}`" + (" plus this checkout's uncommitted run" if changed else "")


def _stamp(root: str | Path) -> str:
    return f"size `{size_name(Path(root).resolve())}`, {lock_commit(root)}"


def render(name: str, root: str | Path, stamp: str | None = None) -> str:
    """The block ``name`` for the workspace ``root``: a stamp line, then the generated text."""
    if name not in BLOCKS:
        close = difflib.get_close_matches(name, BLOCKS, n=1)
        raise KeyError(f"unknown facts block {name!r}" + (f"; did you mean {close[0]!r}?" if close else "") + f" Known: {', '.join(BLOCKS)}")
    fn, stages = BLOCKS[name]
    stamp = stamp or _stamp(root)
    src = ", ".join(f"`reports/metrics/{s}.json`" for s in stages) or "`reports/notebooks/`"
    try:
        body = fn(Metrics(root))
    except MissingMetrics as e:
        body = f"Not measured in this workspace: {e.args[0]} is missing (run `make repro`)."
    return f"_Generated from {src} ({stamp}) by `make repro`; do not edit._\n\n{body}\n"


def rewrite(text: str, root: str | Path, stamp: str | None = None) -> str:
    """``text`` with every facts block regenerated."""
    opened = len(_OPEN.findall(text))
    if opened != len(_CLOSE.findall(text)) or opened != len(_BLOCK.findall(text)):
        raise ValueError("unbalanced facts markers (each `<!-- facts: NAME -->` line needs its own `<!-- /facts -->`)")
    return _BLOCK.sub(lambda mt: mt.group(1) + render(mt.group(2), root, stamp) + mt.group(4), text)


def update(files: Iterable[str | Path], root: str | Path = ".") -> list[Path]:
    """Rewrite the facts blocks of ``files``; returns the files that changed."""
    stamp = _stamp(root)
    changed = []
    for f in map(Path, files):
        old = f.read_text()
        if not _OPEN.search(old) and not _CLOSE.search(old):
            continue
        new = rewrite(old, root, stamp)
        if new != old:
            f.write_text(new)
            changed.append(f)
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m webiml.report.facts", description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", help=f"markdown files (default: {' '.join(DOCS)})")
    p.add_argument("--root", default=".", help="the workspace whose reports/metrics/ are read (default: the repository)")
    args = p.parse_args(argv)
    files = args.files or sorted({str(f) for pat in DOCS for f in Path(".").glob(pat)})
    for f in update(files, args.root):
        print(f"rewrote {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
