"""The ``webiml`` command line. Each subcommand calls the same functions as the notebooks."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _collect(args: argparse.Namespace) -> int:
    from .collect import CollectConfig, candidates_from, collect
    from .download import DownloadPolicy
    from .register import RegisterConfig
    from .synth import WebPairConfig

    sources = args.source or ["synthetic"]
    cfg = CollectConfig(
        max_pixels=args.max_pixels,
        workers=args.workers,
        seed=args.seed,
        phash_distance=args.phash_distance,
        register=RegisterConfig(),
        synthetic=WebPairConfig(),
        photo_dir=args.photo_dir,
    )
    cands = candidates_from(
        sources, n_pairs=args.n_pairs, csv=args.csv, root=args.root, miml_root=args.root,
        noso_root=args.root, manifest=args.manifest,
    )
    policy = DownloadPolicy(timeout=args.timeout, retries=args.retries)
    out = Path(args.out)
    audit = Path(args.audit) if args.audit else out.with_name(out.name + "-audit")
    report = collect(cands, out, cfg, audit=audit, download_policy=policy, overwrite=args.overwrite, progress=not args.quiet)
    print(json.dumps({k: report[k] for k in ("n_accepted", "n_rejected", "rejected_by_reason", "registration", "seconds_total")}, indent=1))
    print(f"pairs: {out / 'pairs.jsonl'}  rejected: {out / 'rejected.jsonl'}  truth: {audit}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="webiml", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("collect", help="gather forged/authentic pairs into a clean, registered pair corpus")
    c.add_argument("--source", action="append", choices=["synthetic", "pairs-csv", "miml-dir", "noso", "url-manifest"],
                   help="repeat to combine sources (default: synthetic)")
    c.add_argument("--out", required=True, help="output folder (pairs.jsonl, rejected.jsonl, report.json, pairs/)")
    c.add_argument("--audit", help="where truth masks of synthetic/NoSo pairs go (default: OUT-audit)")
    c.add_argument("--n-pairs", type=int, default=200, help="synthetic pairs to generate")
    c.add_argument("--csv", help="pairs-csv: CSV of forged,authentic paths")
    c.add_argument("--root", help="pairs-csv: base of relative paths; miml-dir / noso: the dataset folder")
    c.add_argument("--manifest", help="url-manifest: CSV/TSV of forged and authentic URLs (downloads!)")
    c.add_argument("--photo-dir", help="synthetic: your own photo folder instead of the bundled photos")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--workers", type=int, default=2)
    c.add_argument("--max-pixels", type=int, default=64_000_000, help="larger images are rejected (too-large)")
    c.add_argument("--phash-distance", type=int, default=4, help="forged images this close are duplicates (bits)")
    c.add_argument("--timeout", type=float, default=15.0, help="url-manifest: seconds per request")
    c.add_argument("--retries", type=int, default=3, help="url-manifest: retries on transient errors")
    c.add_argument("--overwrite", action="store_true", help="replace an existing collection in OUT")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_collect)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"webiml {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
