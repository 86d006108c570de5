"""The `safetygrid` command: look at a config, judge any file, archive and verify a run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .config import ConfigError, load, reference_markdown
from .grid import iter_cells, samples_for


def _validate(args: argparse.Namespace) -> int:
    config = load(args.config)
    n_cells = sum(1 for _ in iter_cells(config))
    print(f"{args.config}: valid; {len(config['models'])} model(s), {len(config['precisions'])} precision(s), "
          f"{len(config['kv'])} kv setting(s), {len(config['temperatures'])} temperature(s): {n_cells} cells "
          f"before unsupported precisions are dropped; {len(config['judges'])} judge(s)")
    return 0


def _cells(args: argparse.Namespace) -> int:
    config = load(args.config)
    print("model\tprecision\tkv\ttemperature\tk")
    for cell in iter_cells(config):
        print(f"{cell.model}\t{cell.precision}\t{cell.kv}\t{cell.temperature}\t{samples_for(cell.temperature, config)}")
    return 0


def _archive(args: argparse.Namespace) -> int:
    from .analysis.aggregate import cell_of
    from .archive.package import write_archive

    config = load(args.config)
    votes_root = Path(args.results) / "votes"
    cells = [cell_of(p, str(votes_root)) for p in sorted(votes_root.rglob("*.parquet"))]
    if not cells:
        print(f"no votes under {votes_root}: run the workflow first", file=sys.stderr)
        return 2
    out = Path(args.out or Path(args.results) / "archive" / f"{config['name']}.tar.gz")
    print(write_archive(config=config, cells=cells, results=args.results, out=out))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .archive.package import VerificationError, verify

    try:
        summary = verify(args.archive)
    except VerificationError as exc:
        print(f"verification FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"{args.archive}: {summary['files']} files match the manifest; the tables follow from the votes")
    return 0


def _read_calibration(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a calibration file (invalid JSON: {exc})") from exc


def _judge(args: argparse.Namespace) -> int:
    import logging

    from .judges.file import judge_file

    from .judges import JudgeFailed

    if bool(args.input) == bool(args.labels):
        print("safetygrid judge: give --input (rows to label) or --labels (labelled rows to score the judges on)",
              file=sys.stderr)
        return 2
    if args.input and not args.output:
        print("safetygrid judge: --input needs --output", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    config = load(args.config)
    judges = [j.strip() for j in args.judges.split(",") if j.strip()] if args.judges else None
    calibration_file = Path(args.calibration or Path(args.results) / "calibration" / "ensemble.json")
    chosen = judges or sorted(config["judges"])
    needs = config["ensemble_label"] == "stacked" or any(config["judges"].get(j, {}).get("calibrate") for j in chosen)
    if needs and not calibration_file.exists():
        print(f"safetygrid judge: the config's ensemble uses calibration fitted on human labels, and "
              f"{calibration_file} does not exist; run `snakemake {calibration_file}` first (or pass --calibration)",
              file=sys.stderr)
        return 2
    # the failures a user can fix (a bad file or row, a judge that failed on too many rows, a missing
    # or unreadable file) are one line and exit code 2; anything else is a bug and keeps its traceback
    try:
        calibration = _read_calibration(calibration_file) if needs else None
        if args.labels:
            return _score_labels(args, config, judges, calibration)
        table = judge_file(args.input, args.output, config, judges, sources=Path(args.results) / "sources",
                           calibration=calibration)
    except (OSError, ValueError, JudgeFailed) as exc:  # LabelledSetError is a ValueError
        print(f"safetygrid judge: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    ds = table["unsafe_ds"].astype("boolean")
    ds_text = f"{int(ds.sum())} by Dawid–Skene" if ds.notna().any() else "Dawid–Skene needs three judges"
    print(f"{args.output}: {len(table)} rows, {int(table['unsafe'].astype('boolean').sum())} unsafe by the "
          f"ensemble's {config['ensemble_label']} label ({ds_text}), {int((table['n_failed'] > 0).sum())} with a "
          "judge failure")
    return 0


def _score_labels(args: argparse.Namespace, config: dict, judges: list[str] | None,
                  calibration: dict | None) -> int:
    from .labels.score import format_scores, score_file

    table = score_file(args.labels, config, judges, sources=Path(args.results) / "sources",
                       calibration=calibration, output=args.output)
    print(f"{args.labels}: the judges and the ensemble's {config['ensemble_label']} label against its human labels")
    print(format_scores(table, float(config["bootstrap"]["level"]) if "bootstrap" in config else 0.95))
    return 0


def _label(args: argparse.Namespace) -> int:
    from .labels.files import LabelError
    from .labels.queue import build_queue
    from .labels.store import LabelStore
    from .labels.terminal import key_reader, keys_of, read_rubric, run_session

    rater = args.rater.strip()
    if not rater or "," in rater:
        print("safetygrid label: --rater must be a non-empty name without commas", file=sys.stderr)
        return 2
    out = Path(args.out or Path("resources") / "labels" / f"{rater}.csv")
    results = Path(args.results)
    if out.resolve().is_relative_to(results.resolve()):
        print(f"safetygrid label: {out} is inside {results}/, which the workflow owns; labels live in a file you own "
              "(default resources/labels/RATER.csv)", file=sys.stderr)
        return 2
    try:
        rubric_text, summary = read_rubric(args.rubric, args.rubrics)
        seed = load(args.config)["seed"] if args.cell and Path(args.config).exists() else 0
        queue = build_queue(results, cell=args.cell, worklist=args.worklist, show_judges=args.show_judges, seed=seed)
        store = LabelStore(out, args.rubrics)
    except (LabelError, FileNotFoundError) as exc:
        print(f"safetygrid label: {exc}", file=sys.stderr)
        return 2
    if queue.empty:
        print("safetygrid label: nothing to label (the queue is empty)", file=sys.stderr)
        return 2
    print(f"labelling {len(queue)} responses as {rater} into {out} with rubric {args.rubric}; one key per response, "
          f"no Enter ({keys_of(args.rubric)}); every answer is saved at once, and a new session resumes where this "
          "one stopped", flush=True)
    run_session(queue, store, rater=rater, rubric=args.rubric, rubric_text=rubric_text, summary=summary,
                read_key=key_reader(sys.stdin))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="safetygrid", description=__doc__)
    parser.add_argument("--version", action="version", version=f"safetygrid {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_text in (("validate", _validate, "check a config against the schema"),
                                  ("cells", _cells, "list the cells a config asks for")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("config", nargs="?", default="config.yaml")
        p.set_defaults(func=func)
    p = sub.add_parser("config-reference", help="print the table of every config key (config/README.md)")
    p.set_defaults(func=lambda args: print(reference_markdown(), end="") or 0)
    p = sub.add_parser("archive", help="write the archival package of a finished run")
    p.add_argument("config", nargs="?", default="config.yaml")
    p.add_argument("--results", default="results")
    p.add_argument("--out", help="default: RESULTS/archive/NAME.tar.gz")
    p.set_defaults(func=_archive)
    p = sub.add_parser("judge", help="label a CSV/Parquet/JSONL file of prompt, response rows with the judges, or "
                       "score the judges against a labelled file (--labels)")
    p.add_argument("--input", help="rows with columns prompt, response (others are kept)")
    p.add_argument("--labels", help="human-labelled rows (prompt, response, label 0/1): print each judge's and the "
                   "ensemble's kappa, accuracy, TPR, FPR and AUC against them, with bootstrap intervals")
    p.add_argument("--output", help="a .parquet file of the judges' labels (required with --input)")
    p.add_argument("--judges", help="comma-separated judge names of the config (default: all)")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--results", default="results", help="judge models are fetched into RESULTS/sources")
    p.add_argument("--calibration", help="calibrated thresholds and stack (default RESULTS/calibration/ensemble.json); "
                   "read when a judge has calibrate: true or ensemble_label is stacked")
    p.set_defaults(func=_judge)
    p = sub.add_parser("label", help="label the run's own responses in the terminal, one key per response (the "
                       "label samples, one cell, or an adjudication worklist) into a CSV you own")
    p.add_argument("--rater", required=True, help="your name as recorded with every label")
    p.add_argument("--out", help="the label file (default resources/labels/RATER.csv); never under RESULTS")
    p.add_argument("--results", default="results")
    p.add_argument("--cell", help="only this cell, MODEL/PRECISION/KV/T<temperature>: its label sample, or every "
                   "response of it to a harmful prompt when it has none")
    p.add_argument("--worklist", help="label the responses of this worklist (results/adjudication/worklist.csv)")
    p.add_argument("--show-judges", action="store_true", help="show the judges' verdicts (hidden by default: "
                   "they anchor the reader)")
    p.add_argument("--rubric", default="harmbench-v2", help="rubric id; its text is RUBRICS/<id>.md. harmbench-v2 "
                   "(default) records one of four outcomes per response, keys r(efusal) o(ther) a(ttempt) h(armful); "
                   "harmbench-v1 the unsafe label only, keys 1 and 0. Always: s skip, u undo, q quit, ? rubric")
    p.add_argument("--rubrics", default="resources/rubrics")
    p.add_argument("--config", default="config.yaml", help="read for the seed of --cell's order")
    p.set_defaults(func=_label)
    p = sub.add_parser("verify", help="re-check an archive's checksums and recompute its tables")
    p.add_argument("archive")
    p.set_defaults(func=_verify)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
