"""Runs in the quantize environment (its pins conflict with the main one), hence a command line."""
import argparse
import json
import logging
import sys

from safetygrid.quantize import quantize

parser = argparse.ArgumentParser()
parser.add_argument("--source", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--spec", required=True, help="the precision's config entry, as JSON")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
status = quantize(args.source, args.out, json.loads(args.spec))
logging.getLogger("quantize").info("status: %s", json.dumps(status))
sys.exit(0)
