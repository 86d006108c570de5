"""GPU throughput of the hf engine against plain transformers ``generate``, and of the judges'
forward pass against the card's bf16 matmul peak. Throughput does not depend on the weights, so the
models are random, built from a config on the GPU: only a tokenizer (with a chat template) is read.

usage: python benchmarks/gpu.py --tokenizer DIR [--out results.jsonl] [--quick] [--repeat N]
Prints one line per figure, each with its ratio to plain ``generate`` on the same padded inputs:
the engine as configured by default (on CUDA: a static cache, each decoding step a CUDA graph
replay) and with ``generation.cuda_graphs: false`` (eager steps, dynamic cache, what ``generate``
itself does), and checks that the graph path decodes what its steps compute.
Each generate row also gives its share of the memory-bandwidth ceiling: the tokens/s at which every
decoding step reads the weights once and each row's real keys and values once (prompt plus the
tokens so far, no padding, no copies) at the device-to-device copy bandwidth measured here; rows in
batches of the row's batch size (``auto``: all rows in one batch, the most favourable case).
Beside it, ``roofline_tok_s``: each step the longer of those bytes over the bandwidth and its FLOPs
(every row through every matrix, attention over the real keys) over the measured bf16 peak, plus
the prefill of the real prompt tokens at that peak. Mixed-length rows also give ``previous_tok_s``,
the engine with its CUDA batching before segmented prefills (batches cut by padding, each
prefilled whole); ``--part mixed`` breaks that workload's time into prefill, capture and replayed
steps per batch under both, and times a replayed step against the batch's rows.
``--part decode`` times the static decoder's steps on the 8B shape with the grouped-query attention
on and off and profiles one eager step by kernel.
Targets (issue 16): engine >= 1.0x plain generate on every row; a 512-sequence SmolLM2 cell with
``batch_size: auto`` >= 13 000 tokens/s; judges >= 60 % of the measured bf16 peak at their default
batch (absent: auto on CUDA) on the Llama-3-8B shape. Issue 28: the mixed-length workload (one
request in five carries a ~500-token context) >= 0.8x the uniform one's tokens/s; the 8B shape at
batch 128 >= 25 % of its ceiling.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import traceback
from contextlib import contextmanager, nullcontext
from pathlib import Path
from statistics import median

import pandas as pd
import torch
from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

from safetygrid.engines import Request, Settings, chat_token_ids
from safetygrid.engines.batching import BatchLimits, plan_batches
from safetygrid.engines.hf import HFEngine
from safetygrid.engines.static_decode import StaticDecoder

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True, rope_theta=100000.0),
    "llama-3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False, rope_theta=500000.0),
}
NEW_TOKENS = 128


def build(shape: str) -> LlamaForCausalLM:
    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=4096, torch_dtype="bfloat16")
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    # random weights would stop at a random eos; every row runs to NEW_TOKENS in both paths
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def requests(tokenizer, n_prompts: int, k: int, long_every: int = 0,  # type: ignore[no-untyped-def]
             spread: bool = False) -> list[Request]:
    """``n_prompts`` benign prompts × ``k`` samples; with ``long_every`` = n, every n-th prompt carries
    a ~500-token context before its request, as HarmBench's contextual behaviours do; with
    ``spread``, prompt i carries the context's first 500 * i / n_prompts tokens (lengths spread
    evenly)."""
    import csv

    texts = [row["text"] for row in csv.DictReader(open(ROOT / "resources" / "prompts" / "benign.csv"))]
    context = " ".join(texts) * 2
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"][:500]
    context = tokenizer.decode(context_ids)

    def text(i: int) -> str:
        base = texts[i % len(texts)]
        if spread:
            return f"{tokenizer.decode(context_ids[:500 * i // n_prompts])}\n\n---\n\n{base}"
        return f"{context}\n\n---\n\n{base}" if long_every and i % long_every == 0 else base

    return [Request(f"p{i:03d}", s, 1000 * i + s, text(i)) for i in range(n_prompts) for s in range(k)]


def copy_bandwidth() -> float:
    """Bytes read plus written per second by a 4 GiB device-to-device copy (median of 10)."""
    source = torch.randint(0, 255, (4 << 30,), dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    times = []
    for run in range(13):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        target.copy_(source)
        end.record()
        torch.cuda.synchronize()
        if run >= 3:
            times.append(start.elapsed_time(end) / 1e3)
    del source, target
    torch.cuda.empty_cache()
    return 2 * (4 << 30) / median(times)


def ceiling_tok_s(model, tokenizer, reqs, batch, bandwidth: float) -> float:  # type: ignore[no-untyped-def]
    """Tokens/s if each decoding step only read the weights once and each row's real keys and
    values once, at ``bandwidth`` (the input embedding table is looked up, not read)."""
    return limits_tok_s(model, tokenizer, reqs, batch, bandwidth, peak_flops=0.0)


def limits_tok_s(model, tokenizer, reqs, batch, bandwidth: float, peak_flops: float) -> float:  # type: ignore[no-untyped-def]
    """Tokens/s at the roofline: each decoding step takes the longer of its bytes (as in
    :func:`ceiling_tok_s`) over ``bandwidth`` and its FLOPs (every row through every matrix, and its
    attention over its real keys) over ``peak_flops``, and the prefill of the real prompt tokens
    takes its FLOPs over ``peak_flops``. ``peak_flops`` 0: bytes alone, prefill left out."""
    config = model.config
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    embedding = model.model.embed_tokens.weight
    if not config.tie_word_embeddings:
        weights -= embedding.numel() * embedding.element_size()
    layer_params = sum(p.numel() for p in model.model.layers.parameters())
    head_params = embedding.numel()  # the vocabulary projection, tied or not
    head_dim = config.hidden_size // config.num_attention_heads
    kv_per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 2  # bf16 keys + values
    # scores and weighted sum: 2 FLOPs each per (query head, key, dim)
    attention_per_key = 4 * config.num_hidden_layers * config.num_attention_heads * head_dim
    lengths = [len(chat_token_ids(tokenizer, r.text, None)) for r in reqs]
    size = len(reqs) if batch == "auto" else int(batch)
    seconds = 0.0
    for start in range(0, len(lengths), size):
        chunk = lengths[start:start + size]
        for t in range(NEW_TOKENS):
            keys = sum(chunk) + t * len(chunk)
            step_bytes = weights + kv_per_token * keys
            step_flops = 2 * (layer_params + head_params) * len(chunk) + attention_per_key * keys
            seconds += max(step_bytes / bandwidth, step_flops / peak_flops if peak_flops else 0.0)
        if peak_flops:
            prefill = 2 * layer_params * sum(chunk) + 2 * head_params * len(chunk) \
                + attention_per_key * sum(n * (n + 1) // 2 for n in chunk)
            seconds += prefill / peak_flops
    return len(reqs) * NEW_TOKENS / seconds


def engine_run(model, tokenizer, reqs, temperature: float, batch, compile: bool = False,  # type: ignore[no-untyped-def]
               cuda_graphs: bool | None = None) -> tuple[float, pd.DataFrame]:
    """Generated tokens per second of one engine call, and its table."""
    engine = HFEngine("unused")
    engine._load = lambda settings: (model, tokenizer, "cuda")  # type: ignore[method-assign]
    settings = Settings(temperature=temperature, max_new_tokens=NEW_TOKENS, batch_size=batch, device="cuda",
                        dtype="bfloat16", compile=compile, cuda_graphs=cuda_graphs)
    torch.cuda.synchronize()
    started = time.perf_counter()
    table = engine.generate(reqs, settings)
    torch.cuda.synchronize()
    return int(table["n_tokens"].sum()) / (time.perf_counter() - started), table


def engine_rate(model, tokenizer, reqs, temperature: float, batch, compile: bool = False,  # type: ignore[no-untyped-def]
                cuda_graphs: bool | None = None) -> tuple[float, int]:
    rate, table = engine_run(model, tokenizer, reqs, temperature, batch, compile, cuda_graphs)
    return rate, int(table["n_tokens"].sum())


def agreement(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Rows whose tokens are all equal, and the mean share of each row's tokens before the first
    difference (one flipped token changes everything after it in a sampled continuation)."""
    prefix = (a == b).int().cumprod(dim=-1).sum(dim=-1).float() / a.shape[1]
    return {"rows_identical": round(float((prefix == 1).float().mean()), 3),
            "tokens_before_first_difference": round(float(prefix.mean()), 3)}


def graph_checks(model, tokenizer, reqs, temperature: float) -> dict:  # type: ignore[no-untyped-def]
    """Is the captured graph the step it recorded? The static decoder replayed from a graph against
    its steps run eagerly, in bf16 and (small models) float32, where kernel choices under capture
    shift results by ~1e-6 rather than ~1e-2 and a random model's flat logits stop flipping; and in
    float32 against plain generate's dynamic cache at T = 0. A wrong capture (a stale position,
    mask or cache slot) disagrees from the second token on."""
    import copy

    from safetygrid.engines.static_decode import StaticDecoder

    ids = [chat_token_ids(tokenizer, r.text, None) for r in reqs]
    batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt").to("cuda")
    seeds = [r.seed for r in reqs]

    def decode(m, graph: bool, t: float) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return StaticDecoder(m, NEW_TOKENS, [], temperature=t, seeds=seeds, use_graph=graph).decode(
            batch["input_ids"], batch["attention_mask"])

    checks = {"bf16 graph vs eager steps": agreement(decode(model, True, temperature), decode(model, False, temperature))}
    if sum(p.numel() for p in model.parameters()) < 1e9:
        model32 = copy.deepcopy(model).float()
        checks["fp32 graph vs eager steps"] = agreement(decode(model32, True, temperature),
                                                        decode(model32, False, temperature))
        config = GenerationConfig(max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)
        with torch.inference_mode():
            dynamic = model32.generate(**batch, generation_config=config)[:, batch["input_ids"].shape[1]:]
        checks["fp32 graph vs generate, T=0"] = agreement(decode(model32, True, 0.0), dynamic)
        del model32
        torch.cuda.empty_cache()
    return checks


def plain_rate(model, tokenizer, reqs, temperature: float, batch: int) -> float:  # type: ignore[no-untyped-def]
    """Plain ``generate`` over the same chat-templated, left-padded batches (do_sample, top_k=0 at T > 0),
    timed like the engine: from the prompts' text (chat template, one rendering per prompt) to the
    responses' text (``batch_decode``)."""
    config = GenerationConfig(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=temperature > 0,
                              temperature=temperature if temperature > 0 else None, top_k=0 if temperature > 0 else None,
                              top_p=1.0, pad_token_id=0)
    tokens = 0
    torch.cuda.synchronize()
    started = time.perf_counter()
    rendered = {r.prompt_id: chat_token_ids(tokenizer, r.text, None) for r in reqs}
    encoded = [rendered[r.prompt_id] for r in reqs]
    for start in range(0, len(encoded), batch):
        inputs = tokenizer.pad({"input_ids": encoded[start:start + batch]}, return_tensors="pt").to("cuda")
        with torch.inference_mode():
            out = model.generate(**inputs, generation_config=config)
        new = out[:, inputs["input_ids"].shape[1]:]
        tokenizer.batch_decode(new.cpu().tolist(), skip_special_tokens=True)
        tokens += new.shape[0] * new.shape[1]
    torch.cuda.synchronize()
    return tokens / (time.perf_counter() - started)


class _UnsegmentedDecoder(StaticDecoder):
    """The static decoder as it was before segmented prefills: one prefill over the padded batch."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **{**kwargs, "segment_tolerance": None})


@contextmanager
def previous_policy():  # type: ignore[no-untyped-def]
    """The engine as it batched on CUDA before segmented prefills: batches cut by the padding
    tolerance too, each prefilled whole."""
    from safetygrid.engines import hf

    saved = hf.decoder_batch_limits, hf.StaticDecoder
    hf.decoder_batch_limits, hf.StaticDecoder = (lambda limits, graphs, device: limits), _UnsegmentedDecoder
    try:
        yield
    finally:
        hf.decoder_batch_limits, hf.StaticDecoder = saved


def generate_row(model, tokenizer, reqs, batch, temperature: float, repeat: int, report,  # type: ignore[no-untyped-def]
                 labels: dict, bandwidth: float, peak_flops: float) -> None:
    """One row of the table: plain generate, the engine as configured by default (graph replays on
    CUDA) and the engine with cuda_graphs: false (eager), each ``repeat`` times in rotating order
    (medians reported); on mixed-length rows also the engine's previous CUDA batching
    (:func:`previous_policy`)."""
    # warm-up (kernels, allocator) of each path; the graph capture is checked on the first batch
    first = reqs if batch == "auto" else reqs[:batch]
    engine_rate(model, tokenizer, first, temperature, batch)
    engine_rate(model, tokenizer, first, temperature, batch, cuda_graphs=False)
    checks = graph_checks(model, tokenizer, first[:64], temperature)
    order = ["plain", "engine", "eager"] + (["previous"] if labels.get("mixed") else [])
    runs: dict[str, list[float]] = {name: [] for name in order}
    tables = {}
    if "previous" in order:
        with previous_policy():
            engine_rate(model, tokenizer, reqs, temperature, batch)  # its batch shapes' warm-up
    for run in range(repeat):
        # rotate which runs first, so drift (clocks, allocator) does not favour one side
        for name in order[run % len(order):] + order[:run % len(order)]:
            if name == "plain":
                runs[name].append(plain_rate(model, tokenizer, reqs, temperature,
                                             len(reqs) if batch == "auto" else batch))
            elif name == "previous":
                with previous_policy():
                    runs[name].append(engine_rate(model, tokenizer, reqs, temperature, batch)[0])
            else:
                rate, tables[name] = engine_run(model, tokenizer, reqs, temperature, batch,
                                                cuda_graphs=False if name == "eager" else None)
                runs[name].append(rate)
    engine, plain, eager = (median(runs[name]) for name in ("engine", "plain", "eager"))
    same = float((tables["engine"]["response"] == tables["eager"]["response"]).mean())
    ceiling = ceiling_tok_s(model, tokenizer, reqs, batch, bandwidth)
    roofline = limits_tok_s(model, tokenizer, reqs, batch, bandwidth, peak_flops)
    report({"figure": "generate", **labels, "rows": len(reqs), "batch": batch, "T": temperature,
            "engine_tok_s": round(engine), "plain_tok_s": round(plain), "ratio": round(engine / plain, 2),
            "ceiling_tok_s": round(ceiling), "share_of_ceiling": round(engine / ceiling, 3),
            "roofline_tok_s": round(roofline), "share_of_roofline": round(engine / roofline, 3),
            **({"previous_tok_s": round(median(runs["previous"]))} if runs.get("previous") else {}),
            "eager_tok_s": round(eager), "eager_ratio": round(eager / plain, 2),
            "paired_ratios": [round(e / p, 2) for e, p in zip(runs["engine"], runs["plain"])],
            "same_responses_as_eager_bf16": round(same, 3), "graph_checks": checks,
            **{f"{name}_runs": [round(x) for x in values] for name, values in runs.items()}})
    if labels.get("shape") == "smollm2-135m" and batch == 512 and temperature == 0.7:
        for graphed in (None, False):
            auto = median([engine_rate(model, tokenizer, reqs, temperature, "auto", cuda_graphs=graphed)[0]
                           for _ in range(repeat)])
            report({"figure": "generate, batch_size auto" + (", cuda_graphs: false" if graphed is False else ""),
                    **labels,
                    "rows": len(reqs), "T": temperature, "engine_tok_s": round(auto), "plain_tok_s": round(plain),
                    "ratio": round(auto / plain, 2)})


def decode_steps(model, rows: int, prompt_len: int, repeat: int, report) -> None:  # type: ignore[no-untyped-def]
    """The static decoder's graph-replayed steps on random prompts, with the grouped-query attention
    (the default) and with transformers' expanded keys and values; then one eager step of each,
    profiled, its device time grouped by kernel."""
    from torch.profiler import ProfilerActivity, profile

    from safetygrid.engines.static_decode import StaticDecoder

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 40000, (rows, prompt_len), generator=generator).cuda()
    mask = torch.ones_like(ids)
    seeds = list(range(rows))
    rates: dict[str, list[float]] = {"grouped": [], "expanded": []}
    tokens: dict[str, torch.Tensor] = {}
    for run in range(repeat + 1):
        for name in (["grouped", "expanded"] if run % 2 == 0 else ["expanded", "grouped"]):
            decoder = StaticDecoder(model, NEW_TOKENS, [], temperature=0.7, seeds=seeds, use_graph=True,
                                    grouped_attention=name == "grouped")
            torch.cuda.synchronize()
            started = time.perf_counter()
            tokens[name] = decoder.decode(ids, mask)
            torch.cuda.synchronize()
            if run:  # the first run of each warms up
                rates[name].append(rows * NEW_TOKENS / (time.perf_counter() - started))
    record = {"figure": "static decode steps", "rows": rows, "prompt_len": prompt_len, "T": 0.7,
              **{f"{name}_tok_s": round(median(values)) for name, values in rates.items()},
              "grouped_over_expanded": round(median(rates["grouped"]) / median(rates["expanded"]), 2),
              **{f"grouped_vs_expanded_{k}": v for k, v in agreement(tokens["grouped"], tokens["expanded"]).items()}}
    for name in ("grouped", "expanded"):
        decoder = StaticDecoder(model, 8, [], temperature=0.7, seeds=seeds, use_graph=False,
                                grouped_attention=name == "grouped")
        decoder.decode(ids, mask)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            decoder.decode(ids, mask)
        torch.cuda.synchronize()
        kernels = [e for e in prof.key_averages() if e.device_time_total > 0]
        total = sum(e.device_time_total for e in kernels)
        record[f"{name}_eager_8_steps_gpu_ms"] = round(total / 1e3, 2)
        record[f"{name}_top_kernels"] = [(e.key[:60], round(e.device_time_total / total, 3))
                                         for e in sorted(kernels, key=lambda e: -e.device_time_total)[:8]]
    report(record)


class _PhaseTimed(StaticDecoder):
    """The static decoder with its phases timed (synchronised): prefill (to the first token),
    the capture (one eager step and the recording), and the replayed steps."""

    def decode(self, input_ids, attention_mask):  # type: ignore[no-untyped-def]
        torch.cuda.synchronize()
        self.marks = [time.perf_counter()]
        out = super().decode(input_ids, attention_mask)
        torch.cuda.synchronize()
        self.marks.append(time.perf_counter())
        return out

    def _capture(self, one_step):  # type: ignore[no-untyped-def]
        torch.cuda.synchronize()
        self.marks.append(time.perf_counter())
        replay = super()._capture(one_step)
        torch.cuda.synchronize()
        self.marks.append(time.perf_counter())
        return replay


def mixed_phases(model, tokenizer, reqs, report) -> None:  # type: ignore[no-untyped-def]
    """Where the mixed-length workload's time goes, batch by batch, under the previous CUDA
    batching (batches cut by the padding tolerance, each prefilled whole) and the segmented one (one
    batch, prefilled in segments of similar lengths); then the replayed step's time against the
    batch's rows on uniform 24-token prompts (32 new tokens)."""
    from safetygrid.engines.static_decode import prefill_segments

    ids = {r.prompt_id: chat_token_ids(tokenizer, r.text, None) for r in reqs}
    ordered = sorted(reqs, key=lambda r: (-len(ids[r.prompt_id]), r.prompt_id, r.sample))
    lengths = [len(ids[r.prompt_id]) for r in ordered]
    for policy in ("previous", "segmented", "previous", "segmented"):  # the first of each warms up
        plan = (plan_batches(lengths, NEW_TOKENS, BatchLimits()) if policy == "previous"
                else [range(len(lengths))])
        batches = []
        for part in plan:
            rows = ordered[part.start:part.stop]
            padded = tokenizer.pad({"input_ids": [ids[r.prompt_id] for r in rows]}, return_tensors="pt").to("cuda")
            decoder = _PhaseTimed(model, NEW_TOKENS, [], temperature=0.7, seeds=[r.seed for r in rows], use_graph=True,
                                  segment_tolerance=None if policy == "previous" else 0.25)
            decoder.decode(padded["input_ids"], padded["attention_mask"])
            start, captured, replaying, end = decoder.marks
            batches.append({"rows": len(rows), "width": padded["input_ids"].shape[1],
                            "segments": [len(s) for s in prefill_segments(lengths[part.start:part.stop],
                                                                          decoder.segment_tolerance)],
                            "prefill_s": round(captured - start, 3), "capture_s": round(replaying - captured, 3),
                            "step_ms": round(1e3 * (end - replaying) / (NEW_TOKENS - 2), 2),
                            "total_s": round(end - start, 3)})
        report({"figure": "mixed-length phases", "policy": policy, "rows": len(reqs), "batches": batches,
                "total_s": round(sum(b["total_s"] for b in batches), 3),
                "decode_tok_s": round(len(reqs) * NEW_TOKENS / sum(b["total_s"] for b in batches))})
    # the whole engine call on this workload and on one whose lengths spread evenly (~40 to ~540
    # tokens), under the previous batching, segmented prefills, and segmented without the cap
    from safetygrid.engines import static_decode

    for workload, items in (("1 in 5 long", reqs), ("spread", requests(tokenizer, 64, 4, spread=True))):
        spread_ids = {r.prompt_id: chat_token_ids(tokenizer, r.text, None) for r in items}
        spread_lengths = sorted((len(spread_ids[r.prompt_id]) for r in items), reverse=True)
        record = {"figure": "mixed-length engine calls", "workload": workload, "rows": len(items),
                  "segments": [len(s) for s in prefill_segments(spread_lengths, 0.25)]}
        for policy in ("previous", "segmented", "segmented, no cap"):
            cap = static_decode.MAX_PREFILL_SEGMENTS
            if policy.endswith("no cap"):
                static_decode.MAX_PREFILL_SEGMENTS = 1 << 30
                record["segments_no_cap"] = [len(s) for s in prefill_segments(spread_lengths, 0.25)]
            try:
                with previous_policy() if policy == "previous" else nullcontext():
                    rates = [engine_rate(model, tokenizer, items, 0.7, "auto")[0] for _ in range(3)][1:]
            finally:
                static_decode.MAX_PREFILL_SEGMENTS = cap
            record[f"{policy}_tok_s"] = [round(r) for r in rates]
        report(record)
    generator = torch.Generator().manual_seed(0)
    steps = {}
    for rows in (64, 128, 192, 256):
        prompt = torch.randint(10, 40000, (rows, 24), generator=generator).cuda()
        decoder = _PhaseTimed(model, 32, [], temperature=0.7, seeds=list(range(rows)), use_graph=True)
        for _ in range(2):
            decoder.decode(prompt, torch.ones_like(prompt))
        steps[rows] = round(1e3 * (decoder.marks[3] - decoder.marks[2]) / 30, 2)
    report({"figure": "replayed step ms by rows", "prompt_len": 24, "step_ms": steps})


def matmul_peak() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * 8192 ** 3 / (time.perf_counter() - started) / 1e12


def judge_rate(model, tokenizer, batch, n_items: int = 256, length: int = 400) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """Items/s and TFLOP/s of the judges' forward pass (LMJudge.verdict_logprobs, reading two verdict
    tokens as every LM judge does) on ``length``-token items."""
    from safetygrid.judges.lm import LMJudge

    judge = LMJudge.__new__(LMJudge)
    judge.model, judge.tokenizer, judge.device, judge.scorer, judge.batch_size = model, tokenizer, "cuda", None, batch
    judge.scored = []
    verdicts = [tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")]
    generator = torch.Generator().manual_seed(0)
    items = [torch.randint(10, 40000, (length,), generator=generator).tolist() for _ in range(n_items)]
    judge.verdict_logprobs(items[:16], verdicts)  # warm-up
    torch.cuda.synchronize()
    started = time.perf_counter()
    judge.verdict_logprobs(items, verdicts)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    # the decoder layers run on every token, the vocabulary projection on the last position only
    layers = sum(p.numel() for p in model.model.layers.parameters())
    flops = 2 * layers * length * n_items + 2 * model.lm_head.weight.numel() * n_items
    used = judge._batches(items)
    return n_items / seconds, flops / seconds / 1e12, len(used[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="a tokenizer folder with a chat template")
    parser.add_argument("--out", default="")
    parser.add_argument("--quick", action="store_true", help="fewer rows (a smoke run)")
    parser.add_argument("--part", default="all",
                        help="all, or comma-separated parts: generate, mixed (where the mixed-length workload's "
                             "time goes, phase by phase), decode, compile, judges")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each figure (the median is reported)")
    parser.add_argument("--shape", choices=["all", *SHAPES], default="all", help="generate rows of this model shape only")
    parser.add_argument("--rows", default="", help="comma-separated row numbers (1-7) of the generate table to run")
    args = parser.parse_args()
    parts = set(args.part.split(","))
    unknown = parts - {"all", "generate", "mixed", "decode", "compile", "judges"}
    if unknown:
        parser.error(f"unknown --part {sorted(unknown)}")
    models: dict[str, LlamaForCausalLM] = {}

    def shaped(shape: str) -> LlamaForCausalLM:
        if shape not in models:
            models.clear()
            torch.cuda.empty_cache()
            models[shape] = build(shape)
        return models[shape]

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer, padding_side="left")
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    lines = []

    def report(record: dict) -> None:
        record.update(device=torch.cuda.get_device_name(), torch=torch.__version__, date=time.strftime("%Y-%m-%d"))
        print(json.dumps(record), flush=True)
        lines.append(record)

    peak = matmul_peak()
    report({"figure": "bf16 matmul peak", "tflops": round(peak, 1)})
    bandwidth = copy_bandwidth()
    report({"figure": "device-to-device copy", "tb_s": round(bandwidth / 1e12, 2)})
    # (shape, prompts, samples, batch, T, every n-th prompt long); row 7: the mixed-length workload
    rows = [("smollm2-135m", 64, 8, 64, 0.7, 0), ("smollm2-135m", 64, 8, 512, 0.0, 0),
            ("smollm2-135m", 64, 8, 512, 0.7, 0), ("llama-3-8b", 32, 4, 32, 0.7, 0),
            ("llama-3-8b", 32, 4, 128, 0.7, 0), ("llama-3-8b", 32, 4, 128, 0.0, 0),
            ("llama-3-8b", 64, 4, "auto", 0.7, 5)]
    picked = {int(r) for r in args.rows.split(",") if r}
    if parts & {"generate", "all"}:
        for number, (shape, n_prompts, k, batch, temperature, long_every) in enumerate(
                rows[:2] if args.quick else rows, 1):
            if args.shape not in ("all", shape) or (picked and number not in picked):
                continue
            try:
                generate_row(shaped(shape), tokenizer, requests(tokenizer, n_prompts, k, long_every), batch,
                             temperature, args.repeat, report,
                             {"row": number, "shape": shape, **({"mixed": f"1 in {long_every} long"} if long_every else {})},
                             bandwidth, peak * 1e12)
            except Exception:  # one failed row must not lose the others' figures
                traceback.print_exc()
    if parts & {"mixed", "all"}:
        shape, n_prompts, k, _, _, long_every = rows[6]
        mixed_phases(shaped(shape), tokenizer, requests(tokenizer, n_prompts, k, long_every), report)
    if parts & {"decode", "all"}:
        decode_steps(shaped("llama-3-8b"), 128, 24, args.repeat, report)
    if parts & {"compile", "all"}:
        for shape, n_prompts, k, batch, temperature, _ in [rows[2], rows[1], rows[4]]:
            model = shaped(shape)
            reqs = requests(tokenizer, n_prompts, k)
            started = time.perf_counter()
            engine_rate(model, tokenizer, reqs, temperature, batch, compile=True)  # compiles
            warm = time.perf_counter() - started
            compiled = median([engine_rate(model, tokenizer, reqs, temperature, batch, compile=True)[0]
                               for _ in range(args.repeat)])
            plain = plain_rate(model, tokenizer, reqs, temperature, batch)
            report({"figure": "generate, static cache + compile", "shape": shape, "rows": len(reqs), "batch": batch,
                    "T": temperature, "engine_tok_s": round(compiled), "plain_tok_s": round(plain),
                    "ratio": round(compiled / plain, 2), "first_call_s": round(warm, 1)})
    if parts & {"judges", "all"}:
        model = shaped("llama-3-8b")
        for batch in (None, 8, 16, 32, 64, "auto"):  # None: absent from the config (auto on CUDA)
            items_s, tflops, used = judge_rate(model, tokenizer, batch)
            report({"figure": "judge forward", "shape": "llama-3-8b", "item_tokens": 400, "batch": batch,
                    "batch_used": used, "items_s": round(items_s, 1), "tflops": round(tflops, 1),
                    "share_of_peak": round(tflops / peak, 2)})
    if args.out:
        Path(args.out).write_text("".join(json.dumps(line) + "\n" for line in lines))
    print(f"{platform.node()}: {len(lines)} figures")


if __name__ == "__main__":
    main()
