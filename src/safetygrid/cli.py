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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="safetygrid", description=__doc__)
    parser.add_argument("--version", action="version", version=f"safetygrid {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_text in (("validate", _validate, "check a config against the schema"),
                                  ("cells", _cells, "list the cells a config asks for")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("config", nargs="?", default="config.yaml")
        p.set_defaults(func=func)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
