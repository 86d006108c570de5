"""Task accuracy of a (model, precision) through lm-evaluation-harness (lm-eval's Python API), beside
perplexity (text_perplexity.py).

The cell's own checkpoint is scored by the backend that matches its engine:
- ``hf`` (transformers, compressed-tensors included): lm-eval's ``HFLM`` on the loaded model;
- ``vllm``: lm-eval's vLLM backend where vLLM is installed in the running environment, otherwise
  ``HFLM`` on the same checkpoint (the result records which, and why);
- ``llama_cpp`` (GGUF precisions): the precision's own ``model.gguf`` in-process through
  llama-cpp-python (lm_eval_llama_cpp.py, registered with lm-eval as ``safetygrid-llama-cpp``), on the
  token ids of the checkpoint's tokenizer. A missing GGUF file or llama-cpp-python fails the job
  naming the precision: the engine can score, so NA would hide a broken run.

A task that generates (output_type generate_until) reads its prompts through the model's chat
template on every backend, as every engine renders the safety prompts (lm-eval's
apply_chat_template; for a GGUF, the file's own template): an instruct model answering a raw
prompt is not the model as served. A model without a chat template fails such a task, naming the
precision. Scored tasks (log-likelihoods: multiple choice, perplexity) read the raw text.

Task names are looked up in lm-eval's task index plus the folders in ``quality.task_paths``
(``resources/quality/`` holds the offline smoke task). Unknown names fail before any model is loaded,
naming the closest known ones; a task whose data must come from the hub fails naming the task and
that the hub is unreachable. Results are deterministic for a fixed config: lm-eval's seeds come from
the config, the limit takes the first N documents, and the CPU forward passes are deterministic.
"""

from __future__ import annotations

import difflib
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

# lm-eval metrics read as a task's accuracy, in order of preference
ACCURACY_METRICS = ("acc", "exact_match", "acc_norm")
GENERATIVE_OUTPUT = "generate_until"


class TaskError(ValueError):
    """A task name lm-eval does not know, or a task whose data cannot be read here."""


def offline_environment() -> None:
    """The workflow runs without hub access: lm-eval and datasets must not try the network."""
    for key in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")


def _local_yamls(task_paths: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for folder in task_paths:
        folder = Path(folder)
        if not folder.is_dir():
            raise TaskError(f"quality.task_paths: {folder} is not a folder")
        files.extend(sorted(folder.rglob("*.yaml")))
    return files


def resolve_task_paths(task_paths: Sequence[str | Path], into: Path) -> Path:
    """Copy the task YAMLs of ``task_paths`` into ``into`` with every local ``data_files`` entry made
    absolute (relative to its YAML), so a task reads its data wherever the job runs."""
    into.mkdir(parents=True, exist_ok=True)
    for i, source in enumerate(_local_yamls(task_paths)):
        text = source.read_text(encoding="utf-8")
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError:  # lm-eval's own tags (!function): copied as written
            spec = None
        if isinstance(spec, dict):
            files = (spec.get("dataset_kwargs") or {}).get("data_files")
            if isinstance(files, Mapping):
                spec["dataset_kwargs"]["data_files"] = {
                    split: str((source.parent / f).resolve()) if not Path(f).is_absolute() else f
                    for split, f in files.items()}
            elif isinstance(files, str) and not Path(files).is_absolute():
                spec["dataset_kwargs"]["data_files"] = str((source.parent / files).resolve())
            text = yaml.safe_dump(spec, sort_keys=False)
        (into / f"{i:03d}_{source.name}").write_text(text, encoding="utf-8")
    return into


def task_manager(task_paths: Sequence[str | Path], scratch: Path) -> Any:
    from lm_eval.tasks import TaskManager

    include = str(resolve_task_paths(task_paths, scratch / "tasks")) if task_paths else None
    return TaskManager(include_path=include)


def check_task_names(names: Sequence[str], known: Sequence[str]) -> None:
    """Fail naming each unknown task and the closest known names."""
    known_set = set(known)
    problems = []
    for name in names:
        if name not in known_set:
            close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.6)
            problems.append(f"{name!r} (closest known: {', '.join(close) if close else 'none'})")
    if problems:
        raise TaskError("quality.tasks: lm-evaluation-harness knows no task " + "; ".join(problems))


def _accuracy(metrics: Mapping[str, Any]) -> tuple[str | None, float, float]:
    """(metric name, value, stderr) of a task's lm-eval results ("acc,none", "acc_stderr,none", ...)."""
    for name in ACCURACY_METRICS:
        for key, value in metrics.items():
            if key.split(",")[0] == name and isinstance(value, (int, float)):
                filt = key.split(",", 1)[1] if "," in key else "none"
                stderr = metrics.get(f"{name}_stderr,{filt}")
                stderr = float(stderr) if isinstance(stderr, (int, float)) else math.nan
                return name, float(value), stderr
    return None, math.nan, math.nan


def _hub_failure(task: str, exc: BaseException) -> TaskError | None:
    text = f"{type(exc).__name__}: {exc}".lower()
    signs = ("offline", "couldn't reach", "could not reach", "connection", "hf_hub_offline", "hf_datasets_offline",
             "network", "resolve", "huggingface.co", "localentrynotfound", "dataset not found")
    if any(s in text for s in signs):
        return TaskError(f"quality.tasks: task {task!r} needs the Hugging Face hub for its data, and the hub is "
                         f"unreachable here (offline): {type(exc).__name__}: {exc}"[:1200])
    return None


def _load_task_dict(tasks: Sequence[str], manager: Any) -> dict[str, bool]:
    """Load each task's data, one at a time, so a failure names its task: task -> whether any of its
    (sub)tasks generates."""
    generates = {}
    for task in tasks:
        try:
            loaded = manager.load([task])
        except Exception as exc:  # noqa: BLE001 - re-raised with the task named
            hub = _hub_failure(task, exc)
            if hub is not None:
                raise hub from exc
            raise
        leaves = (loaded or {}).get("tasks", {}) if isinstance(loaded, Mapping) else {}
        generates[task] = any(getattr(t, "OUTPUT_TYPE", None) == GENERATIVE_OUTPUT for t in leaves.values())
    return generates


def chat_template_of(lm: Any) -> str | None:
    """The chat template an lm-eval model renders prompts with (None: it has none)."""
    try:
        return lm.chat_template(True) or None
    except (NotImplementedError, ValueError, AttributeError):
        return None


def backend_for(engine: str) -> tuple[str, str | None]:
    """(lm-eval backend, note) serving ``engine`` in this environment."""
    if engine == "llama_cpp":
        return "llama_cpp", None
    if engine == "vllm":
        try:
            import vllm  # noqa: F401
            import lm_eval.models.vllm_causallms  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - any import failure means no vLLM here
            return "hf", (f"vLLM is not importable in this environment ({type(exc).__name__}): measured with "
                          "lm-eval's HFLM on the same checkpoint")
        return "vllm", None
    return "hf", None


def _hf_lm(checkpoint: str | Path, dtype: str | None, device: str, batch_size: int) -> Any:
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..engines.hf import resolve_device

    device = resolve_device(device)
    torch_dtype = getattr(torch, dtype or ("float32" if device == "cpu" else "bfloat16"))
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch_dtype).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)


def _llama_cpp_lm(checkpoint: str | Path, device: str, seed: int, options: Mapping[str, Any], label: str) -> Any:
    from ..engines import EngineUnavailable
    from ..engines.hf import resolve_device
    from .lm_eval_llama_cpp import LlamaCppLM

    try:
        return LlamaCppLM(pretrained=str(checkpoint), device=resolve_device(device), seed=seed,
                          **{k: v for k, v in options.items() if k in ("n_ctx", "n_batch", "n_threads", "n_gpu_layers")})
    except EngineUnavailable as exc:  # no model.gguf, or no llama_cpp here
        raise TaskError(f"{label}: task accuracy through llama.cpp cannot run: {exc}") from exc


def _vllm_lm(checkpoint: str | Path, dtype: str | None, batch_size: int, seed: int) -> Any:
    from lm_eval.models.vllm_causallms import VLLM

    from ..engines.vllm import keep_weight_only_layers_w4a16

    keep_weight_only_layers_w4a16()  # a 4-bit cell's accuracy from the arithmetic its generations ran
    return VLLM(pretrained=str(checkpoint), dtype=dtype or "auto", batch_size=batch_size, seed=seed)


def task_accuracy(checkpoint: str | Path | None, tasks: Sequence[str], *, engine: str = "hf",
                  task_paths: Sequence[str | Path] = (), limit: int | None = None, num_fewshot: int = 0,
                  seed: int = 0, batch_size: int = 8, dtype: str | None = None, device: str = "auto",
                  engine_options: Mapping[str, Any] | None = None, label: str | None = None,
                  lm: Any = None) -> dict[str, Any]:
    """Each task's accuracy (with lm-eval's standard error) on ``checkpoint``, or NA with the
    reason. ``label`` names the (model, precision) in errors; ``engine_options``: the model's
    options for its engine (llama_cpp: n_ctx, n_batch, n_threads, n_gpu_layers). ``lm``: an lm-eval
    model object to use instead of loading ``checkpoint`` (tests)."""
    label = label or str(checkpoint)
    offline_environment()
    started = time.time()
    import lm_eval
    from lm_eval import simple_evaluate

    with tempfile.TemporaryDirectory(prefix="safetygrid-tasks-") as scratch:
        manager = task_manager(list(task_paths), Path(scratch))
        check_task_names(tasks, manager.all_tasks)  # before any model is loaded
        generates = _load_task_dict(tasks, manager)  # each task's data, so a failure names its task
        backend, note = ("custom", None) if lm is not None else backend_for(engine)
        common = {"order": list(tasks), "limit": limit, "num_fewshot": num_fewshot, "seed": seed, "engine": engine, "backend": backend,
                  "lm_eval_version": getattr(lm_eval, "__version__", None)}
        if lm is None:
            if backend == "llama_cpp":
                lm = _llama_cpp_lm(checkpoint, device, seed, engine_options or {}, label)
            elif backend == "vllm":
                lm = _vllm_lm(checkpoint, dtype, batch_size, seed)
            else:
                lm = _hf_lm(checkpoint, dtype, device, batch_size)
        try:
            generative = [t for t in tasks if generates.get(t)]
            if generative and chat_template_of(lm) is None:
                where = ("its GGUF file has no tokenizer.chat_template" if backend == "llama_cpp"
                         else "its tokenizer has no chat template")
                raise TaskError(f"{label}: task(s) {', '.join(generative)} generate answers, which are read "
                                f"through the model's chat template, and {where}")
            out: dict[str, Any] = {"results": {}, "n-samples": {}}
            # scored tasks read raw text, generating ones the chat template: one lm-eval run each
            for part, chat in (([t for t in tasks if not generates.get(t)], False), (generative, True)):
                if not part:
                    continue
                run = simple_evaluate(model=lm, tasks=part, num_fewshot=num_fewshot, limit=limit,
                                      task_manager=manager, log_samples=False, bootstrap_iters=1000,
                                      apply_chat_template=chat, random_seed=seed, numpy_random_seed=seed,
                                      torch_random_seed=seed, fewshot_random_seed=seed) or {}
                for key in out:
                    out[key].update(run.get(key, {}))
        finally:
            if backend == "vllm":
                from ..engines.vllm import shut_down

                shut_down(lm.model)
        common["chat_template_tasks"] = generative
    results = {}
    for task in tasks:
        metrics = out.get("results", {}).get(task, {})
        name, value, stderr = _accuracy(metrics)
        n = out.get("n-samples", {}).get(task, {}).get("effective")
        row = {"metric": name, "accuracy": value, "stderr": stderr, "n": int(n) if n is not None else None,
               "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        if name is None:
            row["reason"] = f"lm-eval reported no accuracy metric ({', '.join(ACCURACY_METRICS)}) for {task}"
        results[task] = row
    return {"tasks": results, **common, "seconds": round(time.time() - started, 1), "note": note}
