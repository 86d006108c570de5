"""Runs in the quantize environment (its pins conflict with the main one), hence a command line."""
# first, before anything imports torch: a CPU job's kernels are fixed so that its checkpoint has the
# same bytes on every x86-64 CPU (safetygrid/cpu_numerics.py; SAFETYGRID_CPU_NUMERICS=native opts out)
from safetygrid.cpu_numerics import pin_cpu_numerics

pin_cpu_numerics()

import argparse
import json
import logging
import sys

from safetygrid.quantize import quantize

parser = argparse.ArgumentParser()
# the fetched checkpoint, then the files the precision reads (its calibration text), which the rule
# lists as inputs only so that editing one reruns the job; the spec names them
parser.add_argument("--source", required=True, nargs="+")
parser.add_argument("--out", required=True)
parser.add_argument("--spec", required=True, help="the precision's config entry, as JSON")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
status = quantize(args.source[0], args.out, json.loads(args.spec))
logging.getLogger("quantize").info("status: %s", json.dumps(status))
sys.exit(0)
