import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from safetygrid.quality import perplexity

TEXT = "how do i make bread and cake here is recipe step one two three " * 6


def full_pass_perplexity(checkpoint):
    tok = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    ids = tok(TEXT, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, :-1]
    return math.exp(float(torch.nn.functional.cross_entropy(logits, ids[0, 1:])))


def test_chunked_perplexity_equals_one_forward_pass(tiny_checkpoint):
    expected = full_pass_perplexity(tiny_checkpoint)
    for chunk in (1, 7, 1000):
        result = perplexity(tiny_checkpoint, TEXT, chunk=chunk, device="cpu")
        assert result["perplexity"] == pytest.approx(expected, rel=1e-4)
    assert result["n_tokens"] == 6 * 14 - 1  # 14 words a repeat, the first is not predicted


def test_quantized_kv_cache_moves_perplexity_more_at_fewer_bits(tiny_checkpoint):
    # On a random model quantization noise moves perplexity up or down (measured over 8 seeds of the
    # tiny model: 2-bit lower than full precision on one), so "costs" is not a property to assert
    # here; that the cache is really quantized, and more coarsely at 2 bits than at 4, is (8 of 8).
    def at(bits):
        kv = {"bits": bits, "backend": "quanto", "group_size": 8, "residual_length": 0} if bits else None
        return perplexity(tiny_checkpoint, TEXT, chunk=8, device="cpu", kv=kv)

    fp, int4, int2 = at(None), at(4), at(2)
    moved4 = abs(int4["perplexity"] - fp["perplexity"])
    moved2 = abs(int2["perplexity"] - fp["perplexity"])
    assert moved2 > moved4 > 0
    assert moved2 / fp["perplexity"] < 0.05  # noise on the cache, not a broken forward pass
    assert (int2["kv"]["bits"], int4["kv"]["bits"]) == (2, 4)


def test_a_kv_cache_no_perplexity_engine_holds_is_nan_with_the_reason(tiny_checkpoint):
    fp8 = perplexity(tiny_checkpoint, TEXT, device="cpu", kv={"dtype": "fp8"}, engine="vllm")
    assert math.isnan(fp8["perplexity"]) and fp8["engine"] is None
    assert "transformers has no fp8 KV cache" in fp8["reason"]
    # llama.cpp measures the precision's .gguf, which a transformers checkpoint lacks
    q8 = perplexity(tiny_checkpoint, TEXT, device="cpu", kv={"dtype": "q8_0"}, engine="llama_cpp")
    assert math.isnan(q8["perplexity"]) and "holds no .gguf file" in q8["reason"]
    measured = perplexity(tiny_checkpoint, TEXT, device="cpu", engine="vllm")
    assert measured["engine"] == "transformers" and "reason" not in measured
