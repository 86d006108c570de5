"""What every language-model judge shares: the model loaded once, prompts rendered through the
judge model's own chat template, next-token log-probabilities (for verdicts read from the logits of
their tokens in one forward pass) and greedy generation (for formats that must be generated and
parsed).

Three engines serve a judge model, all fed the same token ids (rendered by the checkpoint's own
tokenizer): ``hf`` (transformers, batched, CPU or CUDA), ``llama_cpp`` (llama-cpp-python on the
fetched model's GGUF file: a quantized judge on a CPU, with the KV cache of the previous item's
shared prefix kept, so the format's fixed opening is evaluated once per run of similar items) and
``vllm`` (vLLM's offline ``LLM`` with prefix caching, as HarmBench serves its classifier; see
vllm_scorer.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..engines import OutOfMemory
from ..engines.batching import BatchLimits, next_batch, padded_tokens, plan_batches
from ..engines.hf import forward_limits, resolve_device
from ..logs import progress

if TYPE_CHECKING:
    from .vllm_scorer import VllmScorer

log = logging.getLogger(__name__)
TEMPLATE_DIR = Path("resources/judges")


@dataclass
class GreedyAnswer:
    """A judge model's greedy answer with the log-probabilities of named verdict tokens at each step."""

    ids: list[int]  # the generated tokens, up to (not including) the first special token
    text: str  # ``ids`` decoded without special tokens
    verdict_logprobs: torch.Tensor  # len(ids) x len(verdict_ids): log P(verdict token) at each step
    cut: bool  # stopped by max_new_tokens, not by the model


def verdict_token_ids(tokenizer: Any, words: Sequence[str]) -> list[int]:
    """Ids of the single-token spellings of ``words``, with and without a leading space. A token
    counts only if it decodes back to the word (an unknown-token id would match every word)."""
    ids: set[int] = set()
    for word in words:
        for spelling in (word, " " + word):
            tokens = tokenizer(spelling, add_special_tokens=False)["input_ids"]
            if len(tokens) == 1 and tokenizer.decode(tokens).strip() == word:
                ids.add(tokens[0])
    return sorted(ids)


def first_token_ids(tokenizer: Any, words: Sequence[str]) -> list[int]:
    """Ids of the first token of each spelling of ``words`` (with and without a leading space):
    for verdict words that take more than one token, such as 'unsafe'."""
    ids = set()
    for word in words:
        for spelling in (word, " " + word):
            tokens = tokenizer(spelling, add_special_tokens=False)["input_ids"]
            if tokens:
                ids.add(tokens[0])
    return sorted(ids)


class LMJudge:
    """Base of the language-model judges. ``template`` is a file in resources/judges/ with
    ``{behavior}`` and ``{generation}`` placeholders (and any extra ones the judge fills)."""

    template_name = ""

    def __init__(self, checkpoint: str, *, template: str | None = None, batch_size: int | str | None = None,
                 token_budget: int | str | None = "auto", max_response_tokens: int = 512, device: str = "auto",
                 engine: str = "hf", n_ctx: int = 4096) -> None:
        name = template or self.template_name
        # native protocols (native/) read their verbatim prompts themselves
        self.template = (TEMPLATE_DIR / f"{name}.txt").read_text(encoding="utf-8") if name else ""
        self.batch_size = batch_size
        self.token_budget = token_budget
        self.max_response_tokens = max_response_tokens
        self.device = resolve_device(device)
        self.tokenizer = self.load_tokenizer(checkpoint)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.template and not self.tokenizer.chat_template:
            raise ValueError(f"{checkpoint}: the judge model has no chat template, which the instruct protocol puts "
                             "its question into; a published guard checkpoint runs with protocol: native")
        # every token-id sequence the judge scored or continued, in call order: what the golden
        # rendering tests compare byte for byte
        self.scored: list[list[int]] = []
        # per verdict read (one per call of verdict_logprobs with named tokens, each over every item),
        # the probability the verdict tokens held: judges.judge_table turns a verdict read from
        # almost none of it into that item's error (failures.py)
        self.verdict_masses: list[torch.Tensor] = []
        if engine == "llama_cpp":
            # an engine other than hf: the model is served outside this process's torch
            self.scorer: LlamaCppScorer | VllmScorer | None = LlamaCppScorer(checkpoint, n_ctx=n_ctx, device=self.device)
            return
        if engine == "vllm":
            from .vllm_scorer import VllmScorer

            self.scorer = VllmScorer(checkpoint, device=self.device, max_model_len=n_ctx)
            return
        if engine != "hf":
            raise ValueError(f"a judge is served by engine hf, llama_cpp or vllm, not {engine!r}")
        self.scorer = None
        dtype = torch.float32 if self.device == "cpu" else torch.bfloat16
        self.model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=dtype).to(self.device).eval()

    def load_tokenizer(self, checkpoint: str) -> Any:
        return AutoTokenizer.from_pretrained(checkpoint, padding_side="left")

    def close(self) -> None:
        """Free the engine that serves the judge model (llama.cpp's model, vLLM's worker); the
        judge cannot label after this."""
        close = getattr(self.scorer, "close", None)  # the hf engine's scorer has nothing to free
        if close is not None:
            close()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], model_dir: str | None = None, **extra: Any) -> "LMJudge":
        """The judge a config entry describes (the schema's defaults where it is silent)."""
        if model_dir is None:
            raise ValueError(f"a {spec['kind']} judge needs its model's checkpoint")
        batch_size = spec.get("batch_size")  # absent: auto on CUDA, 8 on a CPU
        token_budget = spec.get("token_budget", "auto")
        return cls(model_dir, batch_size=batch_size if batch_size in (None, "auto") else int(batch_size),
                   token_budget=token_budget if token_budget == "auto" else int(token_budget),
                   max_response_tokens=int(spec.get("max_response_tokens", 512)),
                   device=str(spec.get("device", "auto")), engine=str(spec.get("engine", "hf")),
                   n_ctx=int(spec.get("n_ctx", 4096)), **extra)

    def truncate(self, response: str) -> str:
        ids = self.tokenizer(response, add_special_tokens=False)["input_ids"]
        return response if len(ids) <= self.max_response_tokens else self.tokenizer.decode(ids[:self.max_response_tokens])

    def question(self, prompt: str, response: str, **extra: str) -> str:
        text = self.template.replace("{behavior}", prompt).replace("{generation}", self.truncate(response))
        for key, value in extra.items():
            text = text.replace("{" + key + "}", value)
        return text

    def encode(self, question: str, answer_prefix: str = "") -> list[int]:
        """The question as the user turn of the judge model's chat template, the assistant turn
        opened and, when given, already begun with ``answer_prefix``."""
        rendered = self.tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                      add_generation_prompt=True, tokenize=False)
        return self.tokenizer(rendered + answer_prefix, add_special_tokens=False)["input_ids"]

    def _order(self, sequences: Sequence[list[int]]) -> list[int]:
        """Indices of ``sequences``, longest first: batches cut from this order carry little padding."""
        return sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))

    def _limits(self) -> BatchLimits:
        return forward_limits(self.batch_size, self.token_budget, self.model, self.device)

    def _batches(self, sequences: Sequence[list[int]], new_tokens: int = 0) -> list[list[int]]:
        """The planned batches: indices of ``sequences``, longest first, each within the judge's
        row bound, token budget and padding tolerance (engines/batching.py)."""
        order = self._order(sequences)
        planned = plan_batches([len(sequences[i]) for i in order], new_tokens, self._limits())
        return [[order[i] for i in batch] for batch in planned]

    def _each_batch(self, sequences: Sequence[list[int]], run: Callable[[list[int]], None],
                    new_tokens: int = 0) -> None:
        """``run`` on each batch (``new_tokens``: what each row grows by, for generation). Out of device
        memory, the batch's rows and padded tokens bound the next ones at half of each and the batch is
        run again: the longest items come first, so limits that fit here fit for the rest. A single
        item that does not fit fails, naming its length."""
        order = self._order(sequences)
        lengths, limits, done = [len(sequences[i]) for i in order], self._limits(), 0
        while done < len(order):
            size = next_batch(lengths, done, new_tokens, limits)
            idx = order[done:done + size]
            try:
                run(idx)
            except torch.OutOfMemoryError as exc:
                if size == 1:
                    raise OutOfMemory(f"one judge item of {len(sequences[idx[0]])} tokens does not fit on "
                                      f"{self.device}; give the judge max_response_tokens below "
                                      f"{self.max_response_tokens} or a larger device") from exc
                limits = limits.halved_below(size, padded_tokens(lengths[done:done + size], new_tokens))
                log.warning("out of memory on %s: judge batches now at most %d items, %d padded tokens",
                            self.device, limits.rows, limits.tokens)
                if self.device.startswith("cuda"):
                    torch.cuda.empty_cache()
                continue
            done += size

    def next_logprobs(self, sequences: Sequence[list[int]], progress_label: str = "") -> torch.Tensor:
        """log P(next token) after each sequence: n x vocabulary, on the CPU."""
        return self.verdict_logprobs(sequences, None, progress_label)

    def verdict_logprobs(self, sequences: Sequence[list[int]], token_ids: Sequence[int] | None,
                         progress_label: str = "") -> torch.Tensor:
        """log P(next token = t) after each sequence for each t of ``token_ids`` (normalised over the
        whole vocabulary): n x len(token_ids), on the CPU; every token of the vocabulary when None."""
        self.scored.extend(list(s) for s in sequences)
        logp = self._verdict_logprobs(sequences, token_ids, progress_label)
        if token_ids is not None:
            self.verdict_masses.append(torch.logsumexp(logp, dim=-1).exp())
        return logp

    def _verdict_logprobs(self, sequences: Sequence[list[int]], token_ids: Sequence[int] | None,
                          progress_label: str) -> torch.Tensor:
        if self.scorer is not None:
            return self.scorer.verdict_logprobs(sequences, token_ids, progress_label)
        width = self.model.config.vocab_size if token_ids is None else len(token_ids)
        out = torch.empty((len(sequences), width))
        columns = None if token_ids is None else torch.tensor(list(token_ids), device=self.device)
        # the verdict columns stay on the device until the end: no batch waits for the previous one's
        # copy to the host, so the GPU is never idle while the host pads the next batch
        pending: list[tuple[list[int], torch.Tensor]] = []
        bar = progress(len(sequences), progress_label or "judge")

        def score(idx: list[int]) -> None:
            batch = self.tokenizer.pad({"input_ids": [sequences[i] for i in idx]}, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                # only the last position's logits: the vocabulary projection of every other position
                # is a fifth of the forward pass on a small judge
                logits = self.model(**batch, logits_to_keep=1, use_cache=False).logits[:, -1, :].float()
                logp = torch.log_softmax(logits, dim=-1)
            if columns is None:  # a whole vocabulary per row: to the host at once, not held on the device
                out[idx] = logp[:, :width].cpu()
            else:
                pending.append((idx, logp.index_select(1, columns)))
            bar.update(len(idx))

        self._each_batch(sequences, score)
        for idx, picked in pending:
            out[idx] = picked.cpu()
        bar.close()
        return out

    def generate(self, sequences: Sequence[list[int]], max_new_tokens: int) -> list[str]:
        """Greedy continuations of each sequence, decoded."""
        self.scored.extend(list(s) for s in sequences)
        if self.scorer is not None:
            return [self.tokenizer.decode(ids, skip_special_tokens=True)
                    for ids in self.scorer.generate(sequences, max_new_tokens)]
        texts = [""] * len(sequences)

        def continue_batch(idx: list[int]) -> None:
            batch = self.tokenizer.pad({"input_ids": [sequences[i] for i in idx]}, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                generated = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                                pad_token_id=self.tokenizer.pad_token_id)
            for row, i in enumerate(idx):
                texts[i] = self.tokenizer.decode(generated[row, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            log.info("generated %d/%d", sum(1 for t in texts if t), len(sequences))

        self._each_batch(sequences, continue_batch, new_tokens=max_new_tokens)
        return texts

    def generate_scored(self, sequences: Sequence[list[int]], max_new_tokens: int,
                        verdict_ids: Sequence[int]) -> list[GreedyAnswer]:
        """Greedy continuations of each sequence, as ``generate``, with log P(t) for each token t of
        ``verdict_ids`` (normalised over the whole vocabulary) at every step: the verdict a guard
        writes and the probability it wrote it with, from one generation."""
        self.scored.extend(list(s) for s in sequences)
        if self.scorer is not None:
            raw = self.scorer.generate_scored(sequences, max_new_tokens, verdict_ids)
        else:
            raw = self._hf_generate_scored(sequences, max_new_tokens, verdict_ids)
        special = set(self.tokenizer.all_special_ids)
        answers = []
        for ids, logp in raw:
            end = next((n for n, t in enumerate(ids) if t in special), len(ids))
            answers.append(GreedyAnswer(ids=list(ids[:end]), text=self.tokenizer.decode(ids[:end], skip_special_tokens=True),
                                        verdict_logprobs=torch.as_tensor(logp, dtype=torch.float32)[:end].reshape(
                                            end, len(verdict_ids)),
                                        cut=end == len(ids) == max_new_tokens))
        return answers

    def _hf_generate_scored(self, sequences: Sequence[list[int]], max_new_tokens: int,
                            verdict_ids: Sequence[int]) -> list[tuple[list[int], torch.Tensor]]:
        out: list[tuple[list[int], torch.Tensor]] = [([], torch.empty(0))] * len(sequences)
        columns = torch.tensor(list(verdict_ids), device=self.device)

        def continue_batch(idx: list[int]) -> None:
            batch = self.tokenizer.pad({"input_ids": [sequences[i] for i in idx]}, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                generated = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                                pad_token_id=self.tokenizer.pad_token_id, output_logits=True,
                                                return_dict_in_generate=True)
                # the raw logits of each step (not the processed scores), only the verdict columns kept
                logp = torch.stack([step.float().log_softmax(dim=-1).index_select(1, columns)
                                    for step in generated.logits], dim=1).cpu()
            new = generated.sequences[:, batch["input_ids"].shape[1]:].cpu()
            for row, i in enumerate(idx):
                out[i] = (new[row].tolist(), logp[row])

        self._each_batch(sequences, continue_batch)
        return out

    def token_ids(self, words: Sequence[str], first_token: bool = False) -> list[int]:
        ids = first_token_ids(self.tokenizer, words) if first_token else verdict_token_ids(self.tokenizer, words)
        if not ids:
            raise ValueError(f"the judge model's vocabulary has no single-token spelling of {list(words)}")
        return ids


def verdict_share(judge: "LMJudge", sequences: Sequence[list[int]], positive: Sequence[int],
                  negative: Sequence[int], label: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sequence: P(positive) / (P(positive) + P(negative)) for the next token, the mass of both,
    and P(positive) and P(negative) themselves (n x 2), reading only those tokens' log-probabilities."""
    logp = judge.verdict_logprobs(sequences, [*positive, *negative], label)
    pos, neg = list(range(len(positive))), list(range(len(positive), logp.shape[1]))
    score, mass = share(logp, pos, neg)
    both = torch.stack([torch.logsumexp(logp[:, pos], dim=-1), torch.logsumexp(logp[:, neg], dim=-1)], dim=-1).exp()
    return score, mass, both


def share(logp: torch.Tensor, positive: list[int], negative: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """P(positive) / (P(positive) + P(negative)) per row, and the mass of both (how much of the next
    token's probability the verdict words hold at all)."""
    log_pos = torch.logsumexp(logp[:, positive], dim=-1)
    log_neg = torch.logsumexp(logp[:, negative], dim=-1)
    return torch.sigmoid(log_pos - log_neg), log_pos.exp() + log_neg.exp()


def parse_each(texts: Sequence[str], parse: Callable[[str], Any]) -> list[tuple[Any, str | None]]:
    """(parsed, None) or (None, error message) per text."""
    results: list[tuple[Any, str | None]] = []
    for text in texts:
        try:
            results.append((parse(text), None))
        except ValueError as exc:
            results.append((None, str(exc)))
    return results


class LlamaCppScorer:
    """A judge model's GGUF file under llama.cpp: last-position log-probabilities and greedy
    continuations of token-id sequences, one sequence at a time (llama.cpp on a CPU gains nothing
    from padding a batch). Sequences are visited in lexicographic order of their ids and each one
    reuses the cached prefix it shares with the previous one."""

    def __init__(self, checkpoint: str, *, n_ctx: int, device: str) -> None:
        from ..engines.llama_cpp import available_cpus, gguf_file, load_llama

        self.path = gguf_file(checkpoint)
        self.llm = load_llama(checkpoint, n_ctx=n_ctx, n_batch=512, logits_all=False, n_threads=available_cpus(),
                              n_gpu_layers=-1 if device.startswith("cuda") else 0)
        self.n_vocab = int(self.llm.n_vocab())
        self.n_ctx = int(self.llm.n_ctx())
        self.evaluated = 0  # tokens evaluated, for the log: the shared prefixes are not counted

    def _feed(self, ids: list[int]) -> np.ndarray:
        """Evaluate ``ids`` (reusing the cached common prefix); the next token's logits."""
        import llama_cpp

        if len(ids) > self.n_ctx:
            raise ValueError(f"a judge prompt of {len(ids)} tokens does not fit the judge's n_ctx={self.n_ctx}; "
                             "lower max_response_tokens or raise n_ctx")
        cached = self.llm.input_ids[:self.llm.n_tokens]
        limit = min(len(cached), len(ids) - 1)  # at least one token is evaluated, for fresh logits
        common = 0
        if limit > 0:
            differs = np.flatnonzero(np.asarray(cached[:limit]) != np.asarray(ids[:limit]))
            common = int(differs[0]) if len(differs) else limit
        self.llm.n_tokens = common  # eval() drops the cache past n_tokens
        self.llm.eval(ids[common:])
        self.evaluated += len(ids) - common
        pointer = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).astype(np.float32, copy=True)

    def verdict_logprobs(self, sequences: Sequence[list[int]], token_ids: Sequence[int] | None,
                         progress_label: str = "") -> torch.Tensor:
        columns = slice(None) if token_ids is None else list(token_ids)
        out = torch.empty((len(sequences), self.n_vocab if token_ids is None else len(token_ids)))
        order = sorted(range(len(sequences)), key=lambda i: sequences[i])
        total, before = sum(len(s) for s in sequences), self.evaluated
        bar = progress(len(order), progress_label or "judge")
        for i in order:
            out[i] = torch.log_softmax(torch.from_numpy(self._feed(list(sequences[i]))), dim=-1)[columns]
            bar.update(1)
        bar.close()
        log.info("%s: %d items; %d of their %d prompt tokens evaluated, the rest a cached prefix",
                 progress_label or "judge", len(order), self.evaluated - before, total)
        return out

    def close(self) -> None:
        """Free the model now: left to Llama.__del__ at interpreter exit, it runs after llama_cpp's
        module globals are gone and prints a traceback into the job's log."""
        self.llm.close()

    def generate(self, sequences: Sequence[list[int]], max_new_tokens: int) -> list[list[int]]:
        return [ids for ids, _ in self.generate_scored(sequences, max_new_tokens, [])]

    def generate_scored(self, sequences: Sequence[list[int]], max_new_tokens: int,
                        verdict_ids: Sequence[int]) -> list[tuple[list[int], torch.Tensor]]:
        import llama_cpp

        vocab = self.llm._model.vocab
        columns = list(verdict_ids)
        outputs: list[tuple[list[int], torch.Tensor]] = [([], torch.empty(0))] * len(sequences)
        for i in sorted(range(len(sequences)), key=lambda i: sequences[i]):
            ids, generated, steps = list(sequences[i]), [], []
            for _ in range(max_new_tokens):
                logits = torch.from_numpy(self._feed(ids))
                token = int(torch.argmax(logits))
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    break
                steps.append(torch.log_softmax(logits, dim=-1)[columns])
                generated.append(token)
                ids.append(token)
            outputs[i] = (generated, torch.stack(steps) if steps else torch.empty((0, len(columns))))
        return outputs
