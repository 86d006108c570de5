# Config loading and validation, cell enumeration, and every target list, in one place.
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from safetygrid import config as sg_config
from safetygrid.analysis.aggregate import TABLES as AGGREGATE_TABLES
from safetygrid.engines import JOBS_PER_CARD_VARIABLE, cell_engine, cell_unsupported_reason
from safetygrid.engines.sampling import SAMPLER as HF_SAMPLER
from safetygrid.engines.llama_cpp import LLAMA_CPP_SCHEDULE
from safetygrid.grid import iter_cells, samples_for
from safetygrid.labels.own import labelled_cells
from safetygrid.labels import LabelError, label_file_paths
from safetygrid.models.fetch import fetch_request
from safetygrid.prompts import PROMPTSETS, SELECTABLE
from safetygrid.quantize import quantizer as sg_quantizer
from safetygrid.resource_files import judge_files, precision_files, promptset_files

try:
    for _configfile in workflow.configfiles:
        sg_config.check_duplicate_keys(_configfile)
    config.update(sg_config.validate(config))
except sg_config.ConfigError as exc:
    raise WorkflowError(str(exc)) from None


wildcard_constraints:
    model=r"[^/]+",
    precision=r"[^/]+",
    kv=r"[^/]+",
    judge=r"[^/]+",
    promptset=r"[^/]+",
    temperature=r"[0-9]+\.[0-9]+",


RESULTS = "results"
REPORT = f"{RESULTS}/report/index.html"
HUMAN_LABELS = f"{RESULTS}/validation/human.parquet"
JUDGE_VALIDITY = f"{RESULTS}/tables/judge_validity.parquet"
CALIBRATION = f"{RESULTS}/calibration/ensemble.json"
OWN_GOLD = f"{RESULTS}/labels/gold.parquet"
LABEL_STATUS = f"{RESULTS}/labels/status.parquet"
CELL = "{model}/{precision}/{kv}/T{temperature}"


def main_python():
    """This interpreter as a command's params hold it: by its path from the working directory when
    it lives there (the checkout's .venv), so that a checkout moved or copied elsewhere, or an
    archive unpacked on another machine, keeps every finished cell's params and reruns nothing; and
    by its venv's `python`, whichever of its names started Snakemake (`.venv/bin/snakemake` starts
    `python3`, `.venv/bin/python -m snakemake` `python`), so that neither reruns the other's cells."""
    executable = Path(sys.executable)  # not resolved: a venv's python is a link out of the venv
    for workdir, directory in ((Path.cwd(), executable.parent.absolute()),
                               (Path.cwd().resolve(), executable.parent.resolve())):
        if directory.is_relative_to(workdir):
            name = "python" if (directory / "python").exists() else executable.name
            return str((directory / name).relative_to(workdir))
    return sys.executable


def env_python(name):
    """The interpreter of a step whose pins conflict with the main environment's (envs/NAME.txt,
    installed in .venvs/NAME by `make envs`); this one when that environment is not installed."""
    candidate = Path(".venvs") / name / "bin" / "python"
    return str(candidate) if candidate.exists() else main_python()


# ---- prompts -------------------------------------------------------------------------------
PROMPT_PICKS = config["prompts"]
PROMPT_FILES = sorted({f"{RESULTS}/prompts/{pick['promptset']}.parquet" for pick in PROMPT_PICKS.values()})


def promptset_n(promptset):
    ns = {pick.get("n") for pick in PROMPT_PICKS.values() if pick["promptset"] == promptset}
    if len(ns) != 1:
        raise WorkflowError(f"prompt set {promptset} is picked twice with different n: {sorted(map(str, ns))}")
    return ns.pop()


def promptset_selection(promptset):
    """The pick's split, categories and copyright (sets that take them: prompts.SELECTABLE)."""
    keys = ("split", "categories", "copyright")
    picks = {json.dumps({k: pick[k] for k in keys if k in pick}, sort_keys=True)
             for pick in PROMPT_PICKS.values() if pick["promptset"] == promptset}
    if len(picks) != 1:
        raise WorkflowError(f"prompt set {promptset} is picked twice with different selections: {sorted(picks)}")
    return json.loads(picks.pop())


# ---- models --------------------------------------------------------------------------------
def model_entry(name):
    entry = config["models"].get(name) or config.get("judge_models", {}).get(name)
    if entry is None:
        raise WorkflowError(f"{name} is neither an entry of models nor of judge_models")
    return entry


def fetch_source(name):
    """The fetch job's source (models/fetch.py, fetch_request): the entry's own string, unless the
    model is kept as a GGUF or only raw-prompt guards use it; `safetygrid judge` asks the same."""
    model_entry(name)  # a name of neither models nor judge_models fails here, naming it
    return fetch_request(config, name)


# `quantizer: auto` of GGUF precisions, resolved once here in the quantize jobs' interpreter; each such
# job carries the answer in its params and status.json, and a machine that resolves it otherwise than
# the finished checkpoints were made is refused (quantize/quantizer.py)
AUTO_QUANTIZER = (sg_quantizer.resolve_in(env_python("quantize"))
                  if sg_quantizer.needs_resolution(config["precisions"]) else None)
if AUTO_QUANTIZER is not None:
    _problems = sg_quantizer.resolution_problems(config["precisions"], config["models"], AUTO_QUANTIZER, RESULTS)
    if _problems:
        raise WorkflowError("the config cannot run on this machine as it is:\n" + "\n".join(_problems))


def quantize_spec(precision):
    """The quantize job's spec: the precision's entry without its serving engine (changing the engine
    must not requantize), a GGUF `auto` with its resolution."""
    entry = {k: v for k, v in config["precisions"][precision].items() if k != "engine"}
    return json.dumps(sg_quantizer.resolved_spec(entry, AUTO_QUANTIZER), sort_keys=True)


def params_b(name):
    return float(model_entry(name).get("params_b", 1.0))


def mem_mb_for(name, attempt=1):
    # fp32 weights on CPU are 4 bytes a parameter; leave room for activations, the KV cache and the
    # tokenizer, and grow on retry
    return int((1500 + 6000 * params_b(name)) * attempt)


# a job that runs a model holds one GPU when the config asks for CUDA explicitly; "auto" runs on
# whatever the job finds (profiles cap concurrent GPU jobs with --resources gpu=N)
GPUS_PER_MODEL_JOB = 1 if str(config["generation"]["device"]).startswith("cuda") else 0
# jobs that run at once on one card (--resources gpu=N lets N run) plan their batches in a part of
# its memory each; read by safetygrid.engines.hf in every job, which inherits this environment
os.environ[JOBS_PER_CARD_VARIABLE] = str(config.get("gpu_jobs_per_card", 1))


def runtime_for(name, attempt=1):
    """Minutes for one model load plus one pass of work: about an hour a billion parameters on a
    CPU, six minutes on a GPU; doubled, tripled, ... on retry (a timed-out job is resubmitted)."""
    per_billion = 6 if GPUS_PER_MODEL_JOB else 60
    return int((20 + per_billion * params_b(name)) * attempt)


def cluster_resources(gpu=False):
    """slurm_partition / slurm_account from the config's `cluster` entry. Keys it leaves unset are
    not declared at all, so the profile's or the command line's --default-resources decide them."""
    cluster = config.get("cluster", {})
    placement = {}
    partition = cluster.get("gpu_partition", cluster.get("partition")) if gpu else cluster.get("partition")
    if partition:
        placement["slurm_partition"] = partition
    if cluster.get("account"):
        placement["slurm_account"] = cluster["account"]
    return placement


MODEL_JOB_PLACEMENT = cluster_resources(gpu=GPUS_PER_MODEL_JOB > 0)


# ---- cells ---------------------------------------------------------------------------------
_STATUS = {}


def precision_status(model, precision):
    """status.json of a (model, precision); asking for it makes the quantize checkpoint run first.
    A finished checkpoint's status is read once (a paper-size DAG asks for it thousands of times)."""
    if (model, precision) not in _STATUS:
        directory = checkpoints.quantize.get(model=model, precision=precision).output[0]
        _STATUS[model, precision] = json.loads((Path(directory) / "status.json").read_text())
    return _STATUS[model, precision]


def is_supported(model, precision):
    return bool(precision_status(model, precision)["supported"])


def engine_of(model, precision):
    """The engine serving a supported (model, precision); for a GGUF precision it depends on what
    its quantize step made, so it is read from the checkpoint's status."""
    return cell_engine(config["models"][model], config["precisions"][precision], precision_status(model, precision))


def engine_kv_reason(cell):
    """Why this cell's engine cannot honour its kv entry (or serve its precision); None if it can."""
    return cell_unsupported_reason(engine_of(cell.model, cell.precision), config["kv"][cell.kv],
                                   precision_status(cell.model, cell.precision))


def supported_cells():
    return [cell for cell in iter_cells(config, keep=is_supported) if engine_kv_reason(cell) is None]


def skipped_engine_cells():
    """(model, precision, kv) combinations recorded as unsupported by their engine, for the report."""
    rows = {}
    for cell in iter_cells(config, keep=is_supported):
        reason = engine_kv_reason(cell)
        if reason:
            rows[cell.model, cell.precision, cell.kv] = {
                "model": cell.model, "precision": cell.precision, "kv": cell.kv,
                "method": config["precisions"][cell.precision]["method"], "reason": reason}
    return list(rows.values())


def cell_paths(pattern, **extra):
    return [pattern.format(**cell.as_dict(), **extra) for cell in supported_cells()]


def judgement_paths():
    return [path for judge in sorted(config["judges"])
            for path in cell_paths(f"{RESULTS}/judgements/{{judge}}/{CELL}.parquet", judge=judge)]


def quality_paths():
    """One perplexity per supported (model, precision) and kv setting, and, when quality.tasks names
    any, one task-accuracy file per supported (model, precision)."""
    cells = supported_cells()
    paths = {f"{RESULTS}/quality/{c.model}/{c.precision}/{c.kv}.json" for c in cells}
    if config["quality"]["tasks"]:
        paths |= {f"{RESULTS}/quality/{c.model}/{c.precision}.tasks.json" for c in cells}
    return sorted(paths)


def label_sample_paths():
    """One label sample per supported cell (rules/label.smk)."""
    return cell_paths(f"{RESULTS}/labels/sample/{CELL}.parquet")


# ---- human labels (user-owned inputs: read by jobs, written by no rule) --------------------------
try:
    LABEL_FILES = [str(p) for p in label_file_paths(config["labels"]["files"])]
except LabelError as exc:
    raise WorkflowError(str(exc)) from None
# a job that reads label files reads the rubric each label names too: every rubric is its input
RUBRIC_FILES = sorted(str(p) for p in Path("resources/rubrics").glob("*.md")) if LABEL_FILES else []


def all_checkpoints():
    return [f"{RESULTS}/models/{m}/{q}" for m in config["models"] for q in config["precisions"]]


# ---- judges --------------------------------------------------------------------------------
def judge_model_input(judge):
    """The judge's model folder: its fetched files, or the precision of the grid that it names."""
    spec = config["judges"][judge]
    if "model" not in spec:
        return []
    if "precision" in spec:
        return [f"{RESULTS}/models/{spec['model']}/{spec['precision']}"]
    return [f"{RESULTS}/sources/{spec['model']}"]


def judge_mem_mb(judge, attempt=1):
    return mem_mb_for(config["judges"][judge]["model"], attempt) if "model" in config["judges"][judge] else 1000


def calibration_input(wildcards=None):
    """Votes read the calibration only when it changes them: a calibrated judge or the stacked label.
    Otherwise they stay independent of the validation set."""
    uses = config["ensemble_label"] == "stacked" or any(j.get("calibrate") for j in config["judges"].values())
    return [CALIBRATION] if uses else []


# ---- human labels of the run's own responses ------------------------------------------------
def labelled_cell_paths(pattern, **extra):
    """cell_paths of the cells the label files hold labels for: growing the grid changes nothing here.
    Only the labelled (model, precision) pairs' checkpoints are read, so a new precision (or a run
    without labels) adds no checkpoint to the jobs that read these paths."""
    labelled = labelled_cells(LABEL_FILES) if LABEL_FILES else set()
    wanted = {(model, precision) for model, precision, _, _ in labelled}
    cells = iter_cells(config, keep=lambda model, precision: (model, precision) in wanted
                       and is_supported(model, precision))
    return [pattern.format(**cell.as_dict(), **extra) for cell in cells
            if (cell.model, cell.precision, cell.kv, cell.temperature) in labelled and engine_kv_reason(cell) is None]


def own_gold_input(wildcards=None):
    """The own-response gold labels, for the rules that read them; none without labels.files, so a
    run without own labels has the DAG it always had."""
    return [OWN_GOLD] if LABEL_FILES else []


def own_judgement_paths(wildcards=None):
    """Every judge's labels of the labelled cells: what calibration fits and scores on own labels."""
    return [path for judge in sorted(config["judges"])
            for path in labelled_cell_paths(f"{RESULTS}/judgements/{{judge}}/{CELL}.parquet", judge=judge)]
