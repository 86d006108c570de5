"""A judge model served by vLLM's offline ``LLM``, as HarmBench serves its classifier
(``evaluate_completions.py``: ``LLM(model=cls_path)`` and one greedy token per item).

The judge renders and tokenizes every item itself (the same token ids the hf and llama_cpp engines
see) and hands vLLM ``TokensPrompt``s. Verdicts are read from ``logprob_token_ids``: the
log-probabilities of exactly the verdict tokens, normalised over the whole vocabulary, so the score
and the verdict mass mean what they mean on the other engines. Prefix caching is on: the items of a
judge share the format's long opening.

vLLM lives in its own environment (.venvs/vllm: its pins conflict with llm-compressor's). A judge
job runs in the main environment, so there the model is served by a worker process started with
that environment's Python (``python -m safetygrid.judges.vllm_scorer``), which answers over a pipe;
inside the vLLM environment it is served in-process.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, BinaryIO, Sequence

import torch

log = logging.getLogger(__name__)
# vllm.sampling_params.MAX_LOGPROB_TOKEN_IDS: the most verdict tokens one request may ask for
MAX_VERDICT_TOKENS = 128
# a judge's KV cache on a CPU: 2 GiB hold 43k float32 tokens of SmolLM2-135M, 37k of
# Qwen2.5-1.5B (vLLM queues what does not fit)
CPU_KV_CACHE_BYTES = 2 * 2**30


def vllm_python() -> Path:
    """The vLLM environment's interpreter: $SAFETYGRID_VLLM_PYTHON, else .venvs/vllm of the workflow."""
    return Path(os.environ.get("SAFETYGRID_VLLM_PYTHON", ".venvs/vllm/bin/python"))


class VllmBackend:
    """vLLM in this process."""

    def __init__(self, checkpoint: str, *, device: str, max_model_len: int) -> None:
        from vllm import LLM

        from ..engines.vllm import keep_weight_only_layers_w4a16

        keep_weight_only_layers_w4a16()  # a 4-bit judge scores with its own (W4A16) arithmetic
        on_cpu = not device.startswith("cuda")
        # fp32 on a CPU, as the hf engine there, so the two engines' scores are comparable; the
        # checkpoint's own dtype on a GPU. On a CPU an explicit cache: vLLM's default there (half
        # the RAM, faulted in page by page) costs about 30 s of a judge job's start on 2-core machines
        self.llm = LLM(model=checkpoint, enable_prefix_caching=True, seed=0, dtype="float32" if on_cpu else "auto",
                       max_model_len=max_model_len, gpu_memory_utilization=0.5 if on_cpu else 0.9,
                       kv_cache_memory_bytes=CPU_KV_CACHE_BYTES if on_cpu else None, enforce_eager=on_cpu)

    def close(self) -> None:
        from ..engines.vllm import shut_down

        shut_down(self.llm)

    def verdict_logprobs(self, sequences: Sequence[list[int]], token_ids: Sequence[int]) -> list[list[float]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(token_ids))
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(s)) for s in sequences], params,
                                    use_tqdm=False)
        rows = []
        for out in outputs:
            step = out.outputs[0].logprobs[0]
            rows.append([float(step[t].logprob) for t in token_ids])
        return rows

    def generate(self, sequences: Sequence[list[int]], max_new_tokens: int) -> list[list[int]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=max_new_tokens, temperature=0.0)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(s)) for s in sequences], params,
                                    use_tqdm=False)
        return [list(out.outputs[0].token_ids) for out in outputs]


    def generate_scored(self, sequences: Sequence[list[int]], max_new_tokens: int,
                        token_ids: Sequence[int]) -> list[tuple[list[int], list[list[float]]]]:
        """Greedy continuations with log P(t) of each of ``token_ids`` at every step."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=max_new_tokens, temperature=0.0, logprob_token_ids=list(token_ids))
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(s)) for s in sequences], params,
                                    use_tqdm=False)
        return [(list(out.outputs[0].token_ids),
                 [[float(step[t].logprob) for t in token_ids] for step in out.outputs[0].logprobs])
                for out in outputs]


def _send(stream: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("the vLLM judge worker closed its pipe")
    (size,) = struct.unpack("<Q", header)
    return pickle.loads(stream.read(size))  # noqa: S301 (our own worker's answers)


class VllmWorker:
    """The backend in a worker process of the vLLM environment: requests on its stdin, answers on a
    pipe of their own (vLLM logs to stdout and stderr, which go to this job's log)."""

    def __init__(self, checkpoint: str, *, device: str, max_model_len: int) -> None:
        python = vllm_python()
        if not python.exists():
            raise RuntimeError(f"engine vllm: the vLLM environment's Python {python} does not exist; run "
                               "`make envs-vllm`, point SAFETYGRID_VLLM_PYTHON at one, or set the judge's engine "
                               "to hf")
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            [str(python), "-m", "safetygrid.judges.vllm_scorer", str(write_fd)], stdin=subprocess.PIPE,
            stdout=sys.stderr, pass_fds=(write_fd,))
        os.close(write_fd)
        self.answers = os.fdopen(read_fd, "rb")
        self._call("load", checkpoint=checkpoint, device=device, max_model_len=max_model_len)

    def _call(self, method: str, **kwargs: Any) -> Any:
        assert self.proc.stdin is not None
        try:
            _send(self.proc.stdin, (method, kwargs))
            status, value = _receive(self.answers)
        except (BrokenPipeError, EOFError):
            code = self.proc.wait()
            raise RuntimeError(f"the vLLM judge worker exited (code {code}) during {method}; its log is above") from None
        if status == "error":
            raise RuntimeError(f"the vLLM judge worker failed during {method}: {value}")
        return value

    def verdict_logprobs(self, sequences: Sequence[list[int]], token_ids: Sequence[int]) -> list[list[float]]:
        return self._call("verdict_logprobs", sequences=[list(s) for s in sequences], token_ids=list(token_ids))

    def generate(self, sequences: Sequence[list[int]], max_new_tokens: int) -> list[list[int]]:
        return self._call("generate", sequences=[list(s) for s in sequences], max_new_tokens=max_new_tokens)

    def generate_scored(self, sequences: Sequence[list[int]], max_new_tokens: int,
                        token_ids: Sequence[int]) -> list[tuple[list[int], list[list[float]]]]:
        return self._call("generate_scored", sequences=[list(s) for s in sequences], max_new_tokens=max_new_tokens,
                          token_ids=list(token_ids))

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=120)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 (interpreter shutdown)
            pass


class VllmScorer:
    """The judge engine interface (verdict log-probabilities, greedy continuations) on vLLM."""

    def __init__(self, checkpoint: str, *, device: str, max_model_len: int = 4096) -> None:
        in_process = importlib.util.find_spec("vllm") is not None
        backend = VllmBackend if in_process else VllmWorker
        self.backend: VllmBackend | VllmWorker = backend(checkpoint, device=device, max_model_len=max_model_len)

    def verdict_logprobs(self, sequences: Sequence[list[int]], token_ids: Sequence[int] | None,
                         progress_label: str = "") -> torch.Tensor:
        if token_ids is None:
            raise ValueError("engine vllm reads the log-probabilities of named verdict tokens only")
        if len(token_ids) > MAX_VERDICT_TOKENS:
            raise ValueError(f"engine vllm reads at most {MAX_VERDICT_TOKENS} verdict tokens per item, not {len(token_ids)}")
        if not sequences:
            return torch.empty((0, len(token_ids)))
        log.info("%s: %d items on vLLM", progress_label or "judge", len(sequences))
        return torch.tensor(self.backend.verdict_logprobs(sequences, token_ids), dtype=torch.float32)

    def generate(self, sequences: Sequence[list[int]], max_new_tokens: int) -> list[list[int]]:
        return self.backend.generate(sequences, max_new_tokens) if sequences else []

    def generate_scored(self, sequences: Sequence[list[int]], max_new_tokens: int,
                        token_ids: Sequence[int]) -> list[tuple[list[int], list[list[float]]]]:
        if len(token_ids) > MAX_VERDICT_TOKENS:
            raise ValueError(f"engine vllm reads at most {MAX_VERDICT_TOKENS} verdict tokens per step, not {len(token_ids)}")
        return self.backend.generate_scored(sequences, max_new_tokens, token_ids) if sequences else []

    def close(self) -> None:
        self.backend.close()


def _serve(answer_fd: int) -> None:
    """The worker's loop: (method, kwargs) in on stdin, ("ok", value) or ("error", message) out."""
    answers = os.fdopen(answer_fd, "wb")
    requests = sys.stdin.buffer
    backend: VllmBackend | None = None
    while True:
        try:
            method, kwargs = _receive(requests)
        except EOFError:  # the judge closed its end: it is done
            if backend is not None:
                backend.close()
            return
        try:
            if method == "load":
                backend = VllmBackend(**kwargs)
                value = None
            else:
                assert backend is not None, "load first"
                value = getattr(backend, method)(**kwargs)
            _send(answers, ("ok", value))
        except Exception as exc:  # noqa: BLE001 (reported to the judge, which fails the job)
            _send(answers, ("error", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
