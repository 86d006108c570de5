"""The `safetygrid` command: look at a config without running the workflow."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .config import ConfigError, load
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
    from pathlib import Path

    from .aggregate import cell_of
    from .archive import write_archive

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
    from .archive import VerificationError, verify

    try:
        summary = verify(args.archive)
    except VerificationError as exc:
        print(f"verification FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"{args.archive}: {summary['files']} files match the manifest; the tables follow from the votes")
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
    p = sub.add_parser("archive", help="write the archival package of a finished run")
    p.add_argument("config", nargs="?", default="config.yaml")
    p.add_argument("--results", default="results")
    p.add_argument("--out", help="default: RESULTS/archive/NAME.tar.gz")
    p.set_defaults(func=_archive)
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
