"""`vdmkit curate DIR --out manifest.jsonl [--config thresholds.yaml] [--card card_dir]`."""

from __future__ import annotations


def _cmd_curate(args) -> int:
    import logging
    import sys

    from vdmkit.curation.config import load_curate_config
    from vdmkit.curation.run import curate

    from vdmkit.lazy import require

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cfg = load_curate_config(args.config)
    # before the scan: they were a raw traceback at the first file (cv2), or after the whole scan (the card's plots)
    require("cv2", "curate", "vdmkit curate (its motion and scene-cut scores)")
    if args.card:
        require("matplotlib", "curate", "the dataset card (--card)")

    def report(row):
        if not args.quiet:
            status = row["error"] if row["status"] == "error" else ("kept" if row["keep"] else "; ".join(row["reject"]))
            print(f"{row['status']:5s} {row['path']}: {status}", file=sys.stderr)

    summary = curate(args.dir, args.out, cfg, card=args.card, on_row=report, config=args.config)
    print(f"manifest {args.out}: {summary['files']} files, {summary['ok']} ok ({summary['kept']} kept, "
          f"{summary['rejected']} rejected by filters), {summary['errors']} errors, {summary['cuts']} scene cuts, "
          f"{summary['seconds']}s" + (f"; card in {args.card}" if args.card else ""))
    return 0


def register(sub) -> None:
    p = sub.add_parser("curate", help="scan a folder of videos into a JSONL manifest (+ filters, scenes, card)")
    p.add_argument("dir", help="folder to scan (recursively)")
    p.add_argument("--out", required=True, help="manifest to write, e.g. manifest.jsonl (thresholds go beside it)")
    p.add_argument("--config", help="YAML thresholds (see vdmkit.curation.CurateConfig); unknown keys are errors")
    p.add_argument("--card", help="folder for the dataset card (README.md, index.html, histogram PNGs)")
    p.add_argument("--quiet", action="store_true", help="no per-file lines on stderr")
    p.set_defaults(func=_cmd_curate)
