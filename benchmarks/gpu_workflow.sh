#!/usr/bin/env bash
# The workflow end to end on an offline GPU node (issue 37; docs/timings.md, GPU, end to end), in
# phases that each fit one call of the `device` machine (10 minutes; 64 MiB carried a call):
#   prepare WHEELHOUSE TREE  install the wheels, copy the fresh tree (git archive HEAD) to $RUN, run the
#                            jobs that need no HarmBench prompts (fetch, quantize, validation; the
#                            quality jobs follow the quantize checkpoint, which --until does not
#                            re-resolve, so they run in the next phase)
#   run WHEELHOUSE           the rest of the grid (the HarmBench data wheel arrives with this call)
#   grow                     add T = 0.5 to the config, dry run (the job count), rerun, summary,
#                            `safetygrid archive` and `safetygrid verify`
# Every phase samples the GPU with nvidia-smi every 0.5 s and writes logs and tables to $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1
PHASE=$1
RUN=${RUN:-/root/sg-run}
CONFIG=${CONFIG:-config/gpu-lease.yaml}
OUT=${OUT:-/tmp/out}
# logs beside the tables (they travel back in one tarball: a call returns 8 files at most)
LOGS=/root/sg-logs/$PHASE
mkdir -p "$LOGS"
# GPU_JOBS: model jobs at once on the card (the config's gpu_jobs_per_card sizes their batches to match)
SNAKEMAKE=(python3 -m snakemake --profile profiles/local --configfile "$CONFIG" --resources gpu="${GPU_JOBS:-1}" --cores 16)
say() { echo ">> $(date -u +%T) $*"; }

nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -lms 500 \
  > "$OUT/smi-$PHASE.csv" 2>/dev/null &
SAMPLER=$!

gather() {
  cd "$RUN" || return
  kill "$SAMPLER" 2>/dev/null
  python3 -m snakemake --configfile "$CONFIG" --summary > "$OUT/summary-$PHASE.tsv" 2>/dev/null
  tar -czf "$OUT/results-$PHASE.tgz" --exclude='*.safetensors' --exclude='*.gguf' --exclude='results/generations' \
    --exclude='results/judgements' --exclude='results/votes' --exclude='results/archive' --exclude='results/sources' \
    --exclude='results/models' -C / "${LOGS#/}" -C "$RUN" results .snakemake/log "$CONFIG" 2>/dev/null
  # each checkpoint's status and each fetch's record (the weights themselves stay there)
  tar -czf "$OUT/models-$PHASE.tgz" -C "$RUN" $(cd "$RUN" && ls results/models/*/*/status.json results/sources/*/fetch.json 2>/dev/null)
  # the generations' token counts, per cell (tokens/s against the generate jobs' wall time)
  python3 - > "$OUT/tokens-$PHASE.tsv" <<'PY'
from pathlib import Path
import pandas as pd
for path in sorted(Path("results/generations").rglob("*.parquet")):
    g = pd.read_parquet(path, columns=["n_tokens", "n_prompt_tokens", "finish_reason"])
    print(path.relative_to("results/generations").with_suffix(""), len(g), int(g.n_tokens.sum()),
          int(g.n_prompt_tokens.sum()), int((g.finish_reason == "length").sum()), sep="\t")
PY
  ls -la "$OUT"
}

case $PHASE in
prepare)
  WHEELHOUSE=$2 TREE=$3
  say inventory
  { nvidia-smi; python3 -V; which python3; nproc; free -g; df -h / /root /tmp
    python3 -m pip list 2>/dev/null | grep -i -E '^(torch|transformers|accelerate|numpy|pandas|pyarrow|scipy|statsmodels|matplotlib|peft|sentencepiece|safetensors|tokenizers|huggingface.hub|pyyaml|jinja2|psutil|triton) '
  } 2>&1 | tee "$LOGS/inventory.txt"
  say "installing $(ls "$WHEELHOUSE"/wheels/*.whl | wc -l) wheels with pip --no-index --no-deps"
  python3 -m pip install -q --no-index --no-deps --no-cache-dir "$WHEELHOUSE"/wheels/*.whl 2>&1 | tail -3
  python3 -m pip check 2>&1 | tee "$LOGS/pip-check.txt" | tail -15
  say "a fresh tree in $RUN"
  rm -rf "$RUN" && mkdir -p "$RUN/wheelhouse/prompt-wheels" && tar -xf "$TREE" -C "$RUN"
  tar -xzf "$WHEELHOUSE/shapes.tgz" -C "$RUN/wheelhouse"
  cp -r "$WHEELHOUSE"/prompt-wheels/* "$RUN/wheelhouse/prompt-wheels/"
  cd "$RUN" || exit 1
  export PYTHONPATH=$RUN/src SAFETYGRID_WHEEL_CACHE=$RUN/wheelhouse/prompt-wheels
  python3 -c 'import torch, safetygrid; print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))'
  say dry run
  "${SNAKEMAKE[@]}" -n 2>&1 | sed -n '/Job stats/,/^total/p' | tee "$LOGS/dry-run-prepare.txt"
  say "the jobs that need no HarmBench prompts"
  timeout -s INT "${PREPARE_SECONDS:-420}" "${SNAKEMAKE[@]}" --until quantize calibrate_judges measure_quality measure_tasks \
    > "$LOGS/snakemake-prepare.log" 2>&1; echo "snakemake exit $?"
  tail -25 "$LOGS/snakemake-prepare.log"
  gather ;;
run)
  WHEELHOUSE=$2
  cp -r "$WHEELHOUSE"/prompt-wheels/* "$RUN/wheelhouse/prompt-wheels/"
  cd "$RUN" || exit 1
  export PYTHONPATH=$RUN/src SAFETYGRID_WHEEL_CACHE=$RUN/wheelhouse/prompt-wheels
  say run
  timeout -s INT "${RUN_SECONDS:-540}" "${SNAKEMAKE[@]}" > "$LOGS/snakemake-run.log" 2>&1; echo "snakemake exit $?"
  tail -25 "$LOGS/snakemake-run.log"
  gather ;;
grow)
  cd "$RUN" || exit 1
  export PYTHONPATH=$RUN/src SAFETYGRID_WHEEL_CACHE=$RUN/wheelhouse/prompt-wheels
  say "finishing the grid if the run phase was cut"
  timeout -s INT "${FINISH_SECONDS:-240}" "${SNAKEMAKE[@]}" > "$LOGS/snakemake-finish.log" 2>&1; echo "snakemake exit $?"
  say "adding T = 0.5"
  sed -i 's/^temperatures: \[0.0, 0.7, 1.0\]/temperatures: [0.0, 0.5, 0.7, 1.0]/' "$CONFIG"; grep '^temperatures' "$CONFIG"
  "${SNAKEMAKE[@]}" -n > "$LOGS/dry-run-grow.txt" 2>&1; sed -n '/Job stats/,/^total/p' "$LOGS/dry-run-grow.txt"
  timeout -s INT "${GROW_SECONDS:-300}" "${SNAKEMAKE[@]}" > "$LOGS/snakemake-grow.log" 2>&1; echo "snakemake exit $?"
  tail -25 "$LOGS/snakemake-grow.log"
  say archive
  python3 -m safetygrid.cli archive "$CONFIG" 2>&1 | tee "$LOGS/archive.txt" | tail -5
  say verify
  python3 -m safetygrid.cli verify "results/archive/$(python3 -c "import yaml; print(yaml.safe_load(open('$CONFIG'))['name'])").tar.gz" \
    2>&1 | tee "$LOGS/verify.txt" | tail -15
  gather ;;
esac
