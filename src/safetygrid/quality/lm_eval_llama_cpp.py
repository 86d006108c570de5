"""An lm-evaluation-harness model that runs a precision's own GGUF file in-process through
llama-cpp-python, registered with lm-eval's registry as ``safetygrid-llama-cpp`` so that
``simple_evaluate(model="safetygrid-llama-cpp", model_args={"pretrained": <checkpoint>})`` uses it
like any other model.

lm-eval's own ``gguf`` model is an HTTP client of a running llama.cpp server that reads a
continuation's log-likelihood off the server's top-10 log-probabilities; this one reads the full
logits llama.cpp computes for every position (``logits_all``), as HFLM reads transformers' logits:

- token ids come from the checkpoint's tokenizer (the one every other engine and HFLM use), not
  from llama.cpp's own tokenizer, so both score exactly the same ids;
- ``loglikelihood`` and ``loglikelihood_rolling`` follow HFLM step by step (the same context /
  continuation split, left truncation, rolling windows and prefix token);
- requests are visited in lexicographic order of their ids and each reuses the KV cache of the
  prefix it shares with the previous one (a multiple-choice question's context is evaluated once);
- ``generate_until`` samples through llama.cpp's sampler (greedy at temperature 0; plain
  temperature + top_p otherwise, llama.cpp's default top_k/min_p filters off, as in the engine).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

import lm_eval.models  # noqa: F401 - lm-eval's own models first: get_model() fills an empty registry only
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import (_add_special_kwargs, handle_stop_sequences, has_bos_prefix, normalize_gen_kwargs,
                                  postprocess_generated_text)
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from ..engines.llama_cpp import available_cpus, gguf_file, llama_seed, load_llama
from ..logs import progress

log = logging.getLogger(__name__)

MODEL_NAME = "safetygrid-llama-cpp"
CHAT_TEMPLATE_KEY = "tokenizer.chat_template"
# generation keywords llama.cpp's sampler honours here; lm-eval's own bookkeeping keys are consumed
# before (until, max_gen_toks) or implied by temperature (do_sample)
SAMPLER_KEYS = {"temperature", "top_p", "top_k", "do_sample"}


class NoChatTemplate(ValueError):
    """A chat-formatted prompt was asked of a GGUF file that carries no chat template."""


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@register_model(MODEL_NAME)
class LlamaCppLM(TemplateLM):
    """``pretrained``: a checkpoint folder holding ``model.gguf`` (a precision made by llama.cpp) and
    its tokenizer, or a .gguf file (then ``tokenizer`` names the tokenizer's folder; absent: the
    file's folder)."""

    def __init__(self, pretrained: str, tokenizer: str | None = None, n_ctx: int = 2048, n_batch: int = 512,
                 n_threads: int = 0, n_gpu_layers: int | None = None, seed: int = 0, max_gen_toks: int = 256,
                 add_bos_token: bool | None = None, device: str | None = None, batch_size: Any = None,
                 max_batch_size: Any = None, **unused: Any) -> None:
        # batch_size / max_batch_size: simple_evaluate passes them to every model; llama.cpp decodes
        # one sequence at a time on a CPU and gains nothing from padding a batch
        super().__init__()
        from transformers import AutoTokenizer

        if unused:
            log.warning("%s ignores model arguments it does not know: %s", MODEL_NAME, sorted(unused))
        self.path = gguf_file(pretrained)
        folder = tokenizer or (pretrained if Path(pretrained).is_dir() else str(Path(pretrained).parent))
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        on_gpu = str(device or "cpu").startswith("cuda")
        self.llm = load_llama(self.path, n_ctx=int(n_ctx), n_batch=int(n_batch), n_ubatch=int(n_batch),
                              logits_all=True, n_threads=int(n_threads) or available_cpus(),
                              n_gpu_layers=(-1 if on_gpu else 0) if n_gpu_layers is None else int(n_gpu_layers))
        self._vocab = self.llm._model.vocab
        self._max_length = int(self.llm.n_ctx())
        self._max_gen_toks = int(max_gen_toks)
        self.seed = int(seed)
        self.add_bos_token = add_bos_token
        self.evaluated = 0  # tokens llama.cpp evaluated; the rest were a cached prefix
        self._device = device or "cpu"

    # ---- what lm-eval asks of a model ----------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        # HFLM's choice: BOS where the tokenizer has one, else EOS
        if self.tokenizer.bos_token_id is not None:
            return self.tokenizer.bos_token_id
        return self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def tokenizer_name(self) -> str:
        return str(self.path)

    @property
    def gguf_chat_template(self) -> str | None:
        return self.llm.metadata.get(CHAT_TEMPLATE_KEY) or None

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        """The GGUF file's own chat template (the one the llama_cpp engine renders prompts with)."""
        return self.gguf_chat_template if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        template = self.gguf_chat_template
        if template is None:
            raise NoChatTemplate(f"{self.path} has no {CHAT_TEMPLATE_KEY}: a prompt cannot be rendered as the model "
                                 "was trained to read it")
        return self.tokenizer.apply_chat_template(chat_history, chat_template=template, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt,
                                                  continue_final_message=not add_generation_prompt)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None,
                   **kwargs: Any) -> list[int]:
        # HFLM.tok_encode: a string that already starts with the prefix token gets no second one
        special = _add_special_kwargs(add_special_tokens, self.add_bos_token)
        if add_special_tokens is None and has_bos_prefix(string, self.tokenizer.decode(self.prefix_token_id)):
            special["add_special_tokens"] = False
        ids = self.tokenizer.encode(string, **special)
        return ids[-left_truncate_len:] if left_truncate_len else ids

    def tok_decode(self, tokens: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    # ---- scoring -------------------------------------------------------------------------------

    def _evaluate(self, ids: list[int]) -> None:
        """Bring llama.cpp's cache to exactly ``ids``, evaluating only what differs from the cached
        sequence; the logits of every position are then in ``self.llm.scores``."""
        if len(ids) > self._max_length:
            raise ValueError(f"{len(ids)} tokens do not fit n_ctx={self._max_length} of {self.path}")
        cached = self.llm.input_ids[:self.llm.n_tokens]
        # the last token is always evaluated, so llama.cpp's current logits (what its sampler reads)
        # are those of the last position
        limit = min(len(cached), len(ids) - 1)
        common = 0
        if limit > 0:
            differs = np.flatnonzero(np.asarray(cached[:limit]) != np.asarray(ids[:limit]))
            common = int(differs[0]) if len(differs) else limit
        # rows before `common` hold the logits of the same prefix (causal attention): kept
        self.llm.n_tokens = common  # eval() drops the KV cache past n_tokens
        self.llm.eval(ids[common:])
        self.evaluated += len(ids) - common

    def _score(self, context: list[int], continuation: list[int]) -> tuple[float, bool]:
        """HFLM's causal scoring: the last max_length + 1 tokens of context + continuation, the last
        one dropped from the input; the continuation is read off the last len(continuation) rows."""
        if not context or not continuation or len(continuation) > self._max_length:
            raise ValueError(f"cannot score a continuation of {len(continuation)} tokens after a context of "
                             f"{len(context)} with n_ctx={self._max_length}")
        window = (context + continuation)[-(self._max_length + 1):][:-1]
        self._evaluate(window)
        end = len(window)
        logits = np.asarray(self.llm.scores[end - len(continuation):end])
        targets = np.asarray(continuation)
        logp = _log_softmax(logits)[np.arange(len(targets)), targets]
        return float(logp.sum()), bool((logits.argmax(axis=-1) == targets).all())

    def _loglikelihood_tokens(self, requests: list[tuple[Any, list[int], list[int]]], disable_tqdm: bool = False,
                              **kwargs: Any) -> list[tuple[float, bool]]:
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: requests[i][1] + requests[i][2])
        bar = progress(len(order), "loglikelihood") if not disable_tqdm else None
        for i in order:
            key, context, continuation = requests[i]
            results[i] = self._score(list(context), list(continuation))
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, results[i])
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return results  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """HFLM.loglikelihood_rolling: disjoint windows of max_length tokens, the first conditioned on
        the prefix token, each token predicted once."""
        totals = []
        for (string,) in [r.args for r in requests]:
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                max_seq_len=self._max_length, context_len=1)]
            scored = self._loglikelihood_tokens([(None, c, t) for c, t in windows], disable_tqdm=True)
            total = sum(logp for logp, _ in scored)
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), total)
            totals.append(total)
        return totals

    # ---- generation ----------------------------------------------------------------------------

    def _sample(self, ids: list[int], max_tokens: int, until: list[str], temperature: float, top_p: float,
                top_k: int) -> str:
        import llama_cpp

        self.llm.set_seed(llama_seed(self.seed))  # each request reproducible whatever ran before it
        out: list[int] = []
        if max_tokens <= 0:
            return ""
        # llm.generate keeps the cached prefix it shares with the last sequence
        for token in self.llm.generate(ids, temp=temperature, top_p=top_p, top_k=top_k, min_p=0.0, typical_p=1.0,
                                       repeat_penalty=1.0):
            if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                break
            out.append(int(token))
            if len(out) >= max_tokens or len(ids) + len(out) >= self._max_length:
                break
            if until and any(stop and stop in self.tok_decode(out) for stop in until):
                break
        return self.tok_decode(out)

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        eos = self.tok_decode([self.eot_token_id], skip_special_tokens=False)
        results = []
        bar = progress(len(requests), "generate_until") if not disable_tqdm else None
        warned: set[str] = set()
        for context, gen_kwargs in [r.args for r in requests]:
            kwargs = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_gen = int(kwargs.pop("max_gen_toks"))
            for key in sorted(set(kwargs) - SAMPLER_KEYS - warned):
                log.warning("%s: generation keyword %r is not honoured by llama.cpp's sampler here", MODEL_NAME, key)
                warned.add(key)
            temperature = float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample") else 0.0
            if max_gen >= self._max_length:
                raise ValueError(f"max_gen_toks={max_gen} leaves no room for a prompt in n_ctx={self._max_length}")
            ids = self.tok_encode(context, left_truncate_len=self._max_length - max_gen)
            text = self._sample(ids, max_gen, until, temperature, float(kwargs.get("top_p", 1.0)),
                                int(kwargs.get("top_k", 0)))
            text = postprocess_generated_text(text, until, None)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
            results.append(text)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return results
