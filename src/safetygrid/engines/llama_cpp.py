"""The llama.cpp engine (llama-cpp-python) for GGUF precisions: the model loaded once, every prompt x
sample of a cell generated with the GGUF's own chat template, several requests decoding together
(continuous batching through llama.cpp's batch API, one KV sequence per request).

Each request sets its own seed (METRICS.md's seed(p, s), folded to llama.cpp's 32-bit seed), so a
sample is reproducible and paired across cells; at T = 0 llama.cpp's sampler is greedy. Sampling is
plain temperature (+ top_p): llama.cpp's default top_k/min_p filters are switched off so that the
engine samples the same distribution as the other engines. The cell's kv entry maps to
llama.cpp's K/V cache types (``{dtype: q8_0}``, ``{dtype: q4_0}``, ``{dtype: f16}``).
"""

from __future__ import annotations

import atexit
import logging
import os
import time
import weakref
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..logs import progress
from . import GENERATION_COLUMNS, LLAMA_CPP_KV_DTYPES, EngineUnavailable, Request, Settings
from .numerics import Numerics, generation_table

log = logging.getLogger(__name__)

# kv dtype -> ggml type id (ggml.h: GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q8_0 = 8)
LLAMA_CPP_KV_TYPES = dict(zip(LLAMA_CPP_KV_DTYPES, (1, 8, 2)))
LLAMA_DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp reads this seed as "pick one at random"
# requests decoded together by default. A step reads every weight once for all its sequences, so more
# of them give more tokens/s until the cores are busy: on 2 cores a float32 Qwen2.5-Coder-0.5B greedy
# cell of 25 prompts took 88 s with 8 and 68 s with 25 (docs/timings.md); 8 keeps the KV memory small
LLAMA_CPP_PARALLEL = 8
# recorded in every llama_cpp cell's params: cells generated under another schedule are rerun, never
# mixed with new ones, because which requests share a micro-batch changes how a step rounds. Requests
# first ran one at a time (no schedule recorded); under "continuous-batching" (until 2026-12-07) a
# step split into one micro-batch per run of consecutive sequence ids, and a long prompt waited for
# an empty step (see _BatchDecoder._compact and step_tokens)
LLAMA_CPP_SCHEDULE = "continuous-batching-one-pass"


def kv_cache_types(kv: Mapping[str, Any]) -> dict[str, Any]:
    """``Llama`` keyword arguments for a kv entry: {} for full precision (llama.cpp's f16 cache)."""
    if not kv:
        return {}
    if set(kv) == {"dtype"} and kv["dtype"] in LLAMA_CPP_KV_TYPES:
        ggml_type = LLAMA_CPP_KV_TYPES[str(kv["dtype"])]
        # a quantized V cache needs flash attention in llama.cpp
        return {"type_k": ggml_type, "type_v": ggml_type, "flash_attn": True}
    raise EngineUnavailable(f"llama.cpp has no KV-cache setting for {dict(kv)}; it takes {{dtype: q8_0}}, "
                            "{dtype: q4_0} or {dtype: f16}")


def llama_seed(seed: int) -> int:
    """A 64-bit seed(p, s) folded into llama.cpp's uint32 seed, never its 'random' sentinel."""
    return int(seed) % LLAMA_DEFAULT_SEED


# ggml keeps activations in float32 (a quantized tensor's product quantizes them per block on the fly)
LLAMA_CPP_DTYPE = "float32"


def ggml_kernel(version: str, system_info: str) -> str:
    """llama.cpp's kernels as its build reports them: each backend with the features it was built
    with, e.g. "llama.cpp 0.3.36 CPU: SSE3 AVX AVX2 F16C FMA" (from ``llama_print_system_info``:
    "CPU : SSE3 = 1 | AVX512 = 0 | ...")."""
    parts: list[str] = []
    for field in system_info.split("|"):
        if ":" in field:
            backend, field = field.split(":", 1)
            parts.append(f"{backend.strip()}:")
        name, _, value = field.partition("=")
        if value.strip() == "1":
            parts.append(name.strip())
    return " ".join([f"llama.cpp {version}", *parts]).strip()


def available_cpus() -> int:
    """The CPUs this process may run on (a SLURM job's allocation, not the node's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def gguf_file(checkpoint: str | Path) -> Path:
    path = Path(checkpoint)
    if path.is_file():
        return path
    found = sorted(path.glob("*.gguf"))
    if not found:
        raise EngineUnavailable(
            f"{checkpoint} holds no .gguf file: engine llama_cpp serves GGUF precisions made with llama.cpp "
            "installed in the quantize environment (make envs-llamacpp); serve this precision with engine: hf")
    return found[0]


def load_llama(checkpoint: str | Path, **params: Any) -> Any:
    """llama-cpp-python's ``Llama`` on the checkpoint's .gguf file; EngineUnavailable, naming the
    fix, where there is no .gguf or no llama_cpp."""
    path = gguf_file(checkpoint)
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise EngineUnavailable(
            f"engine 'llama_cpp' is not installed in this environment ({exc}); run `make envs-llamacpp` "
            "(builds llama-cpp-python once and caches the wheel) or serve this precision with engine: hf") from None
    llm = Llama(model_path=str(path), seed=0, verbose=False, **params)
    # a model nobody closed (a workflow script's judge lives until the interpreter exits) is freed by
    # an exit hook, while llama_cpp's module globals still exist: Llama.__del__ at interpreter
    # teardown finds them gone and prints "Exception ignored in: Llama.__del__ ... TypeError:
    # 'NoneType' object is not callable" into the job's log. close() twice is harmless.
    atexit.register(_close_if_alive, weakref.ref(llm))
    return llm


def _close_if_alive(model: "weakref.ref[Any]") -> None:
    llm = model()
    if llm is not None:
        llm.close()


class LlamaCppEngine:
    """Continuous batching: up to ``parallel`` requests (engine option, default
    ``LLAMA_CPP_PARALLEL``) decode together, each in its own sequence of one llama.cpp context, and a
    finished request's sequence takes the next request at once. On a CPU a decode step's cost grows
    slowly with the rows it carries, so this buys throughput without decoding finished rows (the hf
    engine's batches decode until their longest answer ends). Which requests share a step follows
    from the requests' order and lengths alone, so a cell is reproducible."""

    name = "llama_cpp"

    def __init__(self, checkpoint: str, options: Mapping[str, Any] | None = None) -> None:
        self.checkpoint = checkpoint
        self.options = dict(options or {})

    @property
    def parallel(self) -> int:
        parallel = int(self.options.get("parallel", LLAMA_CPP_PARALLEL))
        if parallel < 1:
            raise ValueError(f"llama_cpp.parallel must be at least 1, got {parallel}")
        return parallel

    def generate(self, requests: Sequence[Request], settings: Settings) -> pd.DataFrame:
        # an unsupported kv or a bad parallel is refused before the model load
        kv, parallel = kv_cache_types(settings.kv or {}), self.parallel
        started = time.time()
        # the Llama object gives the weights, the GGUF's metadata and its tokenizer; the requests
        # decode in a context of their own, with one KV sequence per parallel request
        llm = load_llama(self.checkpoint, n_ctx=256, n_batch=256, n_threads=self._threads(),
                         n_gpu_layers=self._gpu_layers(settings))
        try:
            template = llm.metadata.get("tokenizer.chat_template")
            if not template:
                raise EngineUnavailable(f"{gguf_file(self.checkpoint)} has no tokenizer.chat_template; llama_cpp "
                                        "cannot render the prompts as the model was trained to read them")
            log.info("llama.cpp loaded %s in %.1f s", gguf_file(self.checkpoint), time.time() - started)
            formatter = _chat_formatter(llm, template)
            prompts = [_prompt_tokens(llm, formatter, r, settings) for r in requests]
            return self._generate_all(llm, requests, prompts, settings, kv, parallel)
        finally:
            # freed here, not by Llama.__del__ at interpreter exit, when llama_cpp's module
            # globals may already be gone ("Exception ignored in: Llama.__del__" in the job's log)
            llm.close()

    def _threads(self) -> int:
        return int(self.options.get("n_threads", 0)) or available_cpus()

    def _gpu_layers(self, settings: Settings) -> int:
        return int(self.options.get("n_gpu_layers", -1 if settings.device.startswith("cuda") else 0))

    def _generate_all(self, llm: Any, requests: Sequence[Request], prompts: Sequence[list[int]],
                      settings: Settings, kv: Mapping[str, Any], parallel: int) -> pd.DataFrame:
        import llama_cpp

        n_ctx = int(self.options.get("n_ctx", 2048))  # per sequence
        for request, prompt in zip(requests, prompts):
            if len(prompt) + settings.max_new_tokens > n_ctx:
                raise EngineUnavailable(f"prompt {request.prompt_id} ({len(prompt)} tokens) with max_new_tokens="
                                        f"{settings.max_new_tokens} does not fit n_ctx={n_ctx}; raise the model's "
                                        "llama_cpp.n_ctx")
        parallel = min(parallel, max(1, len(requests)))
        n_batch = step_tokens([len(p) for p in prompts], parallel, int(self.options.get("n_batch", 512)))
        decoder = _BatchDecoder(llm, parallel=parallel, n_ctx=n_ctx, n_batch=n_batch, threads=self._threads(),
                                kv=kv)
        rows: list[dict[str, Any] | None] = [None] * len(requests)
        generating, finished = time.time(), 0
        step = max(1, len(requests) // 10)
        bar = progress(len(requests), "generate")
        try:
            samplers = [_sampler(settings, r.seed, prompt, llm.n_vocab()) for r, prompt in zip(requests, prompts)]
            for index, tokens, stopped in decoder.run(prompts, samplers, settings.max_new_tokens):
                r = requests[index]
                rows[index] = {"prompt_id": r.prompt_id, "sample": r.sample, "seed": r.seed,
                               "temperature": settings.temperature, "engine": self.name,
                               "response": llm.detokenize(tokens).decode("utf-8", errors="ignore").strip(),
                               "n_prompt_tokens": len(prompts[index]), "n_tokens": len(tokens),
                               "finish_reason": "stop" if stopped else "length"}
                finished += 1
                bar.update(1)
                if finished % step == 0 or finished == len(requests):
                    elapsed = time.time() - generating
                    log.info("%d/%d responses, %.1f generated tokens/s (%d sequences at a time)", finished,
                             len(requests), decoder.generated / max(elapsed, 1e-9), parallel)
        finally:
            bar.close()
            decoder.close()
        log.info("%d times a sequence moved down to a free KV stream, so that each step decodes in one pass",
                 decoder.moved)
        info = llama_cpp.llama_print_system_info()
        kernel = ggml_kernel(llama_cpp.__version__, info.decode() if isinstance(info, bytes) else str(info))
        return generation_table(rows, GENERATION_COLUMNS, Numerics(LLAMA_CPP_DTYPE, kernel))


def step_tokens(prompt_lengths: Sequence[int], parallel: int, n_batch: int) -> int:
    """Tokens one decoding step may carry: the configured n_batch, or more where the longest prompt
    needs room beside a token of every other sequence. With room for the prompt alone it could join
    only an empty step, so it would wait until every other request had ended and then decode alone."""
    return max(n_batch, max(prompt_lengths, default=1) + parallel)


def _chat_formatter(llm: Any, template: str) -> Any:
    """The GGUF's own chat template, as llama-cpp-python's ``chat_template.default`` handler renders it."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def token_text(token: int) -> str:
        return llm._model.token_get_text(token) if token != -1 else ""

    return Jinja2ChatFormatter(template=template, eos_token=token_text(llm.token_eos()),
                               bos_token=token_text(llm.token_bos()))


def _prompt_tokens(llm: Any, formatter: Any, request: Request, settings: Settings) -> list[int]:
    """The request rendered and tokenized as that handler does (the template writes the special
    tokens itself, so no BOS is added on top)."""
    messages = ([{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else [])
    messages.append({"role": "user", "content": request.text})
    rendered = formatter(messages=messages)
    return llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)


def _sampler(settings: Settings, seed: int, prompt: Sequence[int], n_vocab: int) -> Any:
    """The request's own sampler: the repetition penalty (when not 1), then greedy at T = 0, else top_p
    (when below 1), temperature and a draw seeded with seed(p, s). Without a penalty llama-cpp-python's
    chat completion builds the same chain once its top_k/min_p/typical/penalty defaults are switched
    off (no-ops at 0, 0, 1 and 1); its penalty would count only the last 64 tokens, where this one
    counts the prompt's and the answer's, as transformers' does: the prompt is fed to it here, and
    llama.cpp feeds it each token it samples."""
    import llama_cpp
    from llama_cpp._internals import LlamaSampler

    sampler = LlamaSampler()
    if settings.repetition_penalty != 1.0:
        # a window as long as the request's whole context: every earlier token counts, as in transformers
        window = len(prompt) + settings.max_new_tokens
        penalties = llama_cpp.llama_sampler_init_penalties(n_vocab, window, settings.repetition_penalty, 0.0, 0.0)
        llama_cpp.llama_sampler_chain_add(sampler.sampler, penalties)
        for token in prompt:
            llama_cpp.llama_sampler_accept(sampler.sampler, token)
    if settings.temperature <= 0:
        sampler.add_greedy()
        return sampler
    if settings.top_p < 1.0:
        sampler.add_top_p(settings.top_p, 1)
    sampler.add_temp(settings.temperature)
    sampler.add_dist(llama_seed(seed))
    return sampler


class _BatchDecoder:
    """One llama.cpp context of ``parallel`` KV sequences; ``run`` yields each request as it ends."""

    def __init__(self, llm: Any, *, parallel: int, n_ctx: int, n_batch: int, threads: int,
                 kv: Mapping[str, Any]) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaContext

        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_seq_max = parallel * n_ctx, parallel
        params.n_batch, params.n_ubatch = n_batch, min(n_batch, 512)
        params.n_threads = params.n_threads_batch = threads
        # a stream of n_ctx cells per sequence: the requests share no prefix, and their attention
        # then reads only their own cache
        params.kv_unified = False
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        if kv:
            params.type_k, params.type_v = kv["type_k"], kv["type_v"]
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        self.parallel, self.n_batch = parallel, n_batch
        self.context = LlamaContext(model=llm._model, params=params, verbose=False)
        self.memory = llama_cpp.llama_get_memory(self.context.ctx)
        self.vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.generated = 0  # tokens sampled so far, finished requests or not (for the progress log)
        self.moved = 0  # sequences moved down to a free stream (_compact)

    def close(self) -> None:
        import llama_cpp

        llama_cpp.llama_batch_free(self.batch)
        self.context.close()

    def _add(self, token: int, position: int, sequence: int, wants_logits: bool) -> int:
        batch, i = self.batch, self.batch.n_tokens
        batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, position, 1
        batch.seq_id[i][0], batch.logits[i] = sequence, wants_logits
        batch.n_tokens = i + 1
        return i

    def _compact(self, active: dict[int, list[Any]], free: list[int]) -> None:
        """Keep the decoding sequences at the lowest ids, without holes: llama.cpp (one KV stream a
        sequence) makes a micro-batch of consecutive sequence ids only, and each micro-batch reads
        every weight once, so a step over sequences {0, 2, 5} costs three passes instead of one.
        The highest sequence moves into the lowest free one while that lies below it: its cache is
        copied bit for bit into the free stream (llama_memory_seq_cp; about 19 MB for a 1 536-token
        stream of a 0.5B model, against a step's pass over every weight), so its next logits are
        those it would have had in place. Requests that join then take the ids after the last."""
        import llama_cpp

        while free and active and free[0] < max(active):
            target, source = free.pop(0), max(active)
            llama_cpp.llama_memory_seq_rm(self.memory, target, -1, -1)
            llama_cpp.llama_memory_seq_cp(self.memory, source, target, -1, -1)
            llama_cpp.llama_memory_seq_rm(self.memory, source, -1, -1)
            active[target] = active.pop(source)
            free.append(source)
            free.sort()
            self.moved += 1

    def run(self, prompts: Sequence[list[int]], samplers: Sequence[Any], max_new_tokens: int):
        """Yields (request index, generated tokens, ended by an end-of-generation token) per request."""
        import llama_cpp

        waiting = list(range(len(prompts)))
        free = list(range(self.parallel))  # kept sorted: a new request takes the lowest free sequence
        # sequence -> [request index, next position, generated tokens, logits row, token to feed]
        active: dict[int, list[Any]] = {}
        while waiting or active:
            self._compact(active, free)
            self.batch.n_tokens = 0
            # in increasing sequence order: llama.cpp puts only consecutive sequence ids into one
            # micro-batch, so any other order splits a step into several passes over the weights
            for sequence in sorted(active):
                state = active[sequence]
                state[3] = self._add(state[4], state[1], sequence, True)
                state[1] += 1
            # new requests join while a sequence is free and their prompt fits this step
            while waiting and free and self.batch.n_tokens + len(prompts[waiting[0]]) <= self.n_batch:
                index, sequence = waiting.pop(0), free.pop(0)
                llama_cpp.llama_memory_seq_rm(self.memory, sequence, -1, -1)
                prompt = prompts[index]
                for position, token in enumerate(prompt):
                    row = self._add(token, position, sequence, position == len(prompt) - 1)
                active[sequence] = [index, len(prompt), [], row, None]
            status = llama_cpp.llama_decode(self.context.ctx, self.batch)
            if status != 0:
                raise RuntimeError(f"llama_decode failed with status {status} ({len(active)} sequences, "
                                   f"{self.batch.n_tokens} tokens)")
            for sequence in sorted(active):
                index, _, tokens, row, _ = state = active[sequence]
                token = llama_cpp.llama_sampler_sample(samplers[index].sampler, self.context.ctx, row)
                ended = bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))
                if not ended:
                    tokens.append(token)
                    self.generated += 1
                if ended or len(tokens) >= max_new_tokens:
                    del active[sequence]
                    free.append(sequence)
                    free.sort()
                    samplers[index].close()
                    yield index, tokens, ended
                else:
                    state[4] = token
