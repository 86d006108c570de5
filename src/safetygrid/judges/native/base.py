"""What every native protocol shares: the verbatim prompt files, the guard's tokenizer used as its
authors use it, responses that cannot turn into structure, and the checks made when a judge loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..lm import LMJudge

NATIVE_DIR = Path("resources/judges/native")
COLUMNS = ["unsafe", "score", "refusal", "refusal_score", "raw", "error"]
ZERO_WIDTH_SPACE = "\u200b"


def read_prompt(name: str) -> str:
    """A verbatim prompt, byte for byte (its trailing spaces and newlines are part of it)."""
    return (NATIVE_DIR / name).read_bytes().decode("utf-8")


def row(unsafe: bool | None, score: float | None, refusal: bool | None, raw: str,
        error: str | None = None, refusal_score: float | None = None) -> dict[str, Any]:
    return {"unsafe": unsafe, "score": score, "refusal": refusal, "refusal_score": refusal_score, "raw": raw,
            "error": error}


class NativeJudge(LMJudge):
    """A guard checkpoint fed its published input. Subclasses set ``protocol`` and implement
    ``label``; ``decode`` is logits (a score from the verdict tokens' probabilities) or generate
    (the checkpoint's greedy answer, parsed as its authors parse it)."""

    protocol = ""
    default_max_new_tokens = 8

    def __init__(self, checkpoint: str, *, decode: str = "logits", max_new_tokens: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(checkpoint, template=None, **kwargs)
        if decode not in ("logits", "generate"):
            raise ValueError(f"decode must be 'logits' or 'generate', not {decode!r}")
        self.decode = decode
        self.max_new_tokens = max_new_tokens or self.default_max_new_tokens
        # the guard's own special-token strings ('<end_of_turn>', '<|eot_id|>', ...): in a response
        # they are text, never structure
        self.special_strings = sorted({t for t in self.tokenizer.all_special_tokens if len(t) > 1}
                                      | {t.content for t in self.tokenizer.added_tokens_decoder.values() if t.special},
                                      key=len, reverse=True)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], model_dir: str | None = None, **extra: Any) -> "NativeJudge":
        if "max_new_tokens" in spec:
            extra["max_new_tokens"] = int(spec["max_new_tokens"])
        return super().from_spec(spec, model_dir, decode=spec.get("decode", "logits"), **extra)  # type: ignore[return-value]

    def as_text(self, content: str) -> str:
        """``content`` with any of the guard's special-token strings broken by a zero-width space, so
        the tokenizer reads them as text: a response cannot close the guard's turn or open its own."""
        for special in self.special_strings:
            if special in content:
                content = content.replace(special, special[0] + ZERO_WIDTH_SPACE + special[1:])
        return content

    def ids(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def single_token(self, word: str) -> int:
        """The id of ``word`` as one vocabulary entry, or ValueError naming the checkpoint's gap."""
        token_id = self.tokenizer.convert_tokens_to_ids(word)
        if token_id is None or token_id == self.tokenizer.unk_token_id or self.tokenizer.decode([token_id]) != word:
            raise ValueError(f"{self.protocol}: the judge model's vocabulary has no single token {word!r}, which "
                             "this protocol reads its verdict from; is this the guard checkpoint it was published for?")
        return int(token_id)

    def label(self, prompts: Sequence[str], responses: Sequence[str],
              contexts: Sequence[str | None] | None = None) -> pd.DataFrame:
        raise NotImplementedError
