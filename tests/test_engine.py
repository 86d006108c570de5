import pandas as pd
import pytest
import torch

from safetygrid.engines.sampling import SeededSampler, counter_uniforms, draw, reference_uniform
from safetygrid.engines.cell import build_requests, generate_cell

PROMPTS = pd.DataFrame({"prompt_id": ["a", "b", "c"],
                        "text": ["how do i make bread", "how do i make a cake and bread", "help"]})
GEN = {"max_new_tokens": 8, "batch_size": 2, "device": "cpu"}


def run(checkpoint, temperature, k, batch_size=2):
    return generate_cell(str(checkpoint), PROMPTS, model="tiny", engine="hf", temperature=temperature, k=k,
                         seed=11, generation={**GEN, "batch_size": batch_size}, precision={}, kv={})


def test_sampler_draws_each_row_from_its_own_seed():
    scores = torch.randn(3, 50)
    alone = SeededSampler([5], 1.0, 1.0)(None, scores[1:2])
    together = SeededSampler([9, 5, 7], 1.0, 1.0)(None, scores)
    assert torch.equal(alone[0], together[1])
    assert (together == 0).sum(dim=-1).tolist() == [1, 1, 1]  # exactly one token kept per row


def test_top_p_keeps_only_the_nucleus():
    scores = torch.log(torch.tensor([[0.6, 0.3, 0.05, 0.05]]))
    for seed in range(30):
        pick = SeededSampler([seed], 1.0, 0.8)(None, scores).argmax().item()
        assert pick in (0, 1)


def test_generation_rows_and_reproducibility(tiny_checkpoint):
    first = run(tiny_checkpoint, 1.0, 3)
    again = run(tiny_checkpoint, 1.0, 3)
    pd.testing.assert_frame_equal(first, again)
    assert len(first) == 9 and first[["prompt_id", "sample"]].drop_duplicates().shape[0] == 9
    assert set(first["finish_reason"]) <= {"stop", "length"}
    assert (first["n_tokens"] <= 8).all() and (first["engine"] == "hf").all()
    expected = {(r.prompt_id, r.sample): r.seed for r in build_requests(PROMPTS, "tiny", 11, 3)}
    assert all(expected[(r.prompt_id, r.sample)] == r.seed for r in first.itertuples())
    # samples of one prompt differ (the random model's distribution is near uniform)
    assert first.groupby("prompt_id")["response"].nunique().max() > 1


def test_greedy_is_batch_independent(tiny_checkpoint):
    one = run(tiny_checkpoint, 0.0, 1, batch_size=1)
    three = run(tiny_checkpoint, 0.0, 1, batch_size=3)
    assert one["response"].str.len().gt(0).all()
    assert one["response"].tolist() == three["response"].tolist()


def test_kv_cache_options():
    from safetygrid.engines.hf import kv_cache_options

    assert kv_cache_options({}) == {}
    opts = kv_cache_options({"bits": 4, "backend": "quanto", "group_size": 64, "residual_length": 0})
    assert opts["cache_implementation"] == "quantized"
    assert opts["cache_config"] == {"backend": "quanto", "nbits": 4, "q_group_size": 64, "residual_length": 0}


def test_quantized_kv_cache_changes_greedy_output(tiny_checkpoint):
    fp = run(tiny_checkpoint, 0.0, 1)
    int2 = generate_cell(str(tiny_checkpoint), PROMPTS, model="tiny", engine="hf", temperature=0.0, k=1, seed=11,
                         generation=GEN, precision={},
                         kv={"bits": 2, "backend": "quanto", "group_size": 8, "residual_length": 0})
    assert len(int2) == len(fp) and fp["response"].str.len().gt(0).all()
    assert int2["response"].tolist() != fp["response"].tolist()


def test_sampler_follows_the_distribution():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    scores = torch.log(probs).repeat(4000, 1)
    picks = SeededSampler(range(4000), 1.0, 1.0)(None, scores).argmax(dim=-1)
    freq = torch.bincount(picks, minlength=4).float() / 4000
    assert torch.allclose(freq, probs, atol=0.025), freq  # 4000 draws: sd <= 0.008
    hot = SeededSampler(range(4000), 2.0, 1.0)(None, scores).argmax(dim=-1)
    assert (hot == 0).float().mean() < 0.45  # a higher temperature flattens the distribution


def test_out_of_memory_halves_the_batch_and_keeps_every_row(tiny_checkpoint, monkeypatch):
    from safetygrid.engines import OutOfMemory
    from safetygrid.engines.hf import HFEngine

    real = HFEngine._generate_batch
    sizes = []

    def small_memory(model, tokenizer, device, config, batch, encoded, settings, decoder, **options):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, tokenizer, device, config, batch, encoded, settings, decoder, **options)

    monkeypatch.setattr(HFEngine, "_generate_batch", staticmethod(small_memory))
    table = run(tiny_checkpoint, 1.0, 3, batch_size=8)
    monkeypatch.undo()
    # each batch that ran out of memory is followed by one of at most half its rows, until one fits
    fits = next(i for i, size in enumerate(sizes) if size <= 2)
    assert fits >= 2 and all(after <= before // 2 for before, after in zip(sizes[:fits], sizes[1:fits + 1]))
    assert max(sizes[fits:]) <= 2
    # the same rows as without the memory limit: each (prompt, sample) draws from its own seed
    pd.testing.assert_frame_equal(table, run(tiny_checkpoint, 1.0, 3, batch_size=8))

    def no_memory(*args, **options):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(HFEngine, "_generate_batch", staticmethod(no_memory))
    with pytest.raises(OutOfMemory, match="does not fit"):
        run(tiny_checkpoint, 0.0, 1, batch_size=2)


def test_counter_uniforms_match_their_integer_specification():
    seeds = [0, 1, 12345, 2**62 + 7, 2**63 - 1, 9_223_372_036_854_775_000]
    for step in (0, 1, 17, 4095):
        got = counter_uniforms(torch.tensor(seeds, dtype=torch.int64), step).tolist()
        assert got == [reference_uniform(s, step) for s in seeds]
    values = counter_uniforms(torch.arange(20000, dtype=torch.int64), 3)
    assert 0 <= values.min() and values.max() < 1 and abs(values.mean().item() - 0.5) < 0.01


def test_device_sampler_follows_softmax_at_temperature_chi_square():
    """Chi-square goodness of fit of 20 000 seeded draws against softmax(logits / T) on a 6-token
    vocabulary, at two temperatures: the draws follow the distribution the engine claims."""
    from scipy.stats import chisquare

    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    seeds = torch.arange(20000, dtype=torch.int64) * 7919
    for temperature in (0.7, 1.3):
        picks = draw(logits.repeat(len(seeds), 1), seeds, 5, temperature, 1.0)
        observed = torch.bincount(picks, minlength=6).numpy()
        probs = torch.softmax(logits.double() / temperature, dim=-1).numpy()
        expected = probs / probs.sum() * len(seeds)
        assert chisquare(observed, expected).pvalue > 0.001, (temperature, observed, expected)


def test_top_p_keeps_exactly_the_nucleus():
    probs = torch.tensor([[0.4, 0.25, 0.2, 0.1, 0.05]])
    seeds = torch.arange(5000, dtype=torch.int64)
    for top_p, nucleus_size in ((0.39, 1), (0.41, 2), (0.64, 2), (0.66, 3), (0.84, 3), (0.86, 4), (0.96, 5), (1.0, 5)):
        picks = draw(torch.log(probs).repeat(len(seeds), 1), seeds, 0, 1.0, top_p)
        assert set(picks.unique().tolist()) == set(range(nucleus_size)), top_p


def test_a_requests_tokens_do_not_depend_on_its_batch_position_or_size():
    torch.manual_seed(0)
    logits = torch.randn(8, 3, 40)  # 8 rows, 3 steps
    seeds = [11, 22, 33, 44, 55, 66, 77, 88]

    def run_rows(rows):
        sampler = SeededSampler([seeds[r] for r in rows], 0.9, 0.95)
        return torch.stack([sampler(None, logits[rows, t]).argmax(-1) for t in range(3)], dim=1)

    everything = run_rows(list(range(8)))
    for rows in ([3], [5, 3], [7, 6, 5, 4, 3, 2, 1, 0], [3, 0, 1]):
        got = run_rows(rows)
        for position, row in enumerate(rows):
            assert torch.equal(got[position], everything[row]), (rows, row)


def test_an_absent_batch_size_follows_the_device_the_job_runs_on(monkeypatch):
    from types import SimpleNamespace

    from safetygrid.engines import Settings
    from safetygrid.engines.hf import (AUTO_MEMORY_SHARE, CPU_AUTO_BATCH, CPU_DEFAULT_BATCH, CPU_TOKEN_BUDGET,
                                       bytes_per_token, device_batch_default, forward_limits, generation_limits)

    assert device_batch_default(None, "cuda:1", 16) == "auto"
    assert device_batch_default(None, "cpu", 16) == 16
    assert device_batch_default(4, "cuda", 16) == 4 and device_batch_default("auto", "cpu", 16) == "auto"
    config = SimpleNamespace(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=64,
                             intermediate_size=128, vocab_size=1000)
    model = SimpleNamespace(config=config, dtype=torch.float32)

    def limits(device, **settings):
        return generation_limits(Settings(temperature=0.7, max_new_tokens=49, **settings), model, device)

    assert (limits("cpu").rows, limits("cpu").tokens) == (CPU_DEFAULT_BATCH, CPU_TOKEN_BUDGET)
    assert (limits("cpu", batch_size="auto").rows, limits("cpu", token_budget=500).tokens) == (CPU_AUTO_BATCH, 500)
    assert forward_limits(None, "auto", model, "cpu").rows == 8
    assert forward_limits(None, "auto", model, "cpu").tokens == CPU_TOKEN_BUDGET
    free = 3 * 2 ** 20
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free, 8 * free))
    # a padded token: its KV cache, its prefill activations, and the sampler's vocabulary buffers of
    # its row spread over the 50 tokens a row holds at least
    per_token = bytes_per_token(model) + 4 * 128 * 4 + 20 * 1000 / 50
    assert limits("cuda").rows is None and limits("cuda").tokens == int(free * AUTO_MEMORY_SHARE // per_token)
    # four jobs sharing the card (gpu_jobs_per_card: 4) plan in a quarter of that share each
    monkeypatch.setenv("SAFETYGRID_GPU_JOBS_PER_CARD", "4")
    assert limits("cuda").tokens == int(free * AUTO_MEMORY_SHARE / 4 // per_token)
    judge_token = bytes_per_token(model) + (8 * 64 + 3 * 128) * 4
    assert forward_limits(None, "auto", model, "cuda").tokens == int(free * AUTO_MEMORY_SHARE / 4 // judge_token)
    monkeypatch.setenv("SAFETYGRID_GPU_JOBS_PER_CARD", "0")
    with pytest.raises(ValueError, match="at least one job"):
        limits("cuda")
    monkeypatch.delenv("SAFETYGRID_GPU_JOBS_PER_CARD")
    assert limits("cuda", batch_size=7, token_budget=900).rows == 7 and limits("cuda", token_budget=900).tokens == 900
    # a retried job: rows and tokens divided
    assert (limits("cpu", batch_divisor=4).rows, limits("cpu", batch_divisor=4).tokens) == (4, CPU_TOKEN_BUDGET // 4)
    # no budget (the row-count policy before token budgets)
    assert limits("cuda", batch_size=64, token_budget=None).tokens is None


def test_a_cell_without_batch_size_generates_the_same_rows(tiny_checkpoint):
    absent = generate_cell(str(tiny_checkpoint), PROMPTS, model="tiny", engine="hf", temperature=0.7, k=2, seed=11,
                           generation={"max_new_tokens": 8, "device": "cpu"}, precision={}, kv={})
    pd.testing.assert_frame_equal(absent, run(tiny_checkpoint, 0.7, 2, batch_size=16))


def test_a_device_step_counter_gives_the_same_draws_as_a_host_one():
    seeds = torch.tensor([0, 7, 2**62 + 7, 2**63 - 1, 9_223_372_036_854_775_000], dtype=torch.int64)
    for step in (0, 1, 17, 4095, 2**40):
        assert torch.equal(counter_uniforms(seeds, torch.tensor(step)), counter_uniforms(seeds, step))


def _padded_batch(checkpoint):
    from transformers import AutoTokenizer

    from safetygrid.engines import chat_token_ids

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), padding_side="left")
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    ids = [chat_token_ids(tokenizer, text, None) for text in PROMPTS["text"]]
    return tokenizer.pad({"input_ids": ids}, return_tensors="pt")


@pytest.mark.parametrize("temperature, top_p, penalty", [(0.0, 1.0, 1.0), (0.9, 1.0, 1.0), (1.0, 0.8, 1.0),
                                                     (0.0, 1.0, 1.3), (0.9, 1.0, 1.3)])
def test_static_decoder_matches_generate_with_a_static_cache(tiny_checkpoint, temperature, top_p, penalty):
    """The graph decoder's steps, run eagerly on the CPU, give generate's tokens when generate uses
    the same static cache and (at T > 0) the same seeded sampler, and (penalty above 1) the same
    repetition penalty."""
    from transformers import AutoModelForCausalLM, GenerationConfig, LogitsProcessorList

    from safetygrid.engines.sampling import RepetitionPenalty
    from safetygrid.engines.static_decode import StaticDecoder

    model = AutoModelForCausalLM.from_pretrained(str(tiny_checkpoint), dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None  # every row runs its 12 tokens in both
    batch = _padded_batch(tiny_checkpoint)
    seeds = [101, 202, 303]
    processors = LogitsProcessorList([RepetitionPenalty(penalty, batch["attention_mask"])] if penalty != 1.0 else [])
    processors.extend([SeededSampler(seeds, temperature, top_p)] if temperature > 0 else [])
    config = GenerationConfig(max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0,
                              cache_implementation="static")
    with torch.inference_mode():
        expected = model.generate(**batch, generation_config=config, logits_processor=processors)
    expected = expected[:, batch["input_ids"].shape[1]:]
    got = StaticDecoder(model, 12, [], temperature=temperature, top_p=top_p, repetition_penalty=penalty, seeds=seeds,
                        use_graph=False).decode(batch["input_ids"], batch["attention_mask"])
    assert torch.equal(got, expected)


def test_the_repetition_penalty_is_transformers_own_on_unpadded_rows():
    """On rows without padding the penalty is transformers' RepetitionPenaltyLogitsProcessor's, to
    the bit; on a padded row the padding's tokens are not penalized."""
    from transformers import RepetitionPenaltyLogitsProcessor

    from safetygrid.engines.sampling import RepetitionPenalty

    torch.manual_seed(1)
    ids, scores = torch.randint(0, 30, (4, 9)), torch.randn(4, 30) * 3
    expected = RepetitionPenaltyLogitsProcessor(1.3)(ids, scores.clone())
    # 6 prompt tokens and 3 generated ones, no padding
    got = RepetitionPenalty(1.3, torch.ones(4, 6, dtype=torch.long))(ids, scores.clone())
    assert torch.equal(got, expected) and not torch.equal(got, scores)
    # a pad token (29) seen only in the padding keeps its logit
    padded = torch.tensor([[29, 29, 3, 4, 5]])
    got = RepetitionPenalty(1.3, torch.tensor([[0, 0, 1, 1, 1]]))(padded, scores[:1].clone())
    assert got[0, 29] == scores[0, 29] and got[0, 3] != scores[0, 3]


def test_a_cell_with_a_repetition_penalty_is_batch_independent_and_penalized(tiny_checkpoint):
    """The penalty changes the tiny model's greedy answers (a random model repeats itself), the same
    whether a request decodes alone or in a padded batch, through generate or the static decoder
    (two implementations of the penalty). That padding is not counted is checked on the processor
    itself (above): this tiny model does not pick its pad token in these answers, so counting it
    changes nothing here."""
    def penalized(batch_size, **extra):
        return generate_cell(str(tiny_checkpoint), PROMPTS, model="tiny", engine="hf", temperature=0.0, k=1, seed=11,
                             generation={**GEN, "max_new_tokens": 16, "batch_size": batch_size,
                                         "repetition_penalty": 1.5, **extra}, precision={}, kv={})

    alone = penalized(1)
    assert alone["response"].tolist() == penalized(3)["response"].tolist()
    assert alone["response"].tolist() == penalized(3, cuda_graphs=True)["response"].tolist()
    plain = generate_cell(str(tiny_checkpoint), PROMPTS, model="tiny", engine="hf", temperature=0.0, k=1, seed=11,
                          generation={**GEN, "max_new_tokens": 16, "batch_size": 1}, precision={}, kv={})
    assert alone["response"].tolist() != plain["response"].tolist()


def test_static_decoder_stops_once_every_row_has_ended(tiny_checkpoint):
    from transformers import AutoModelForCausalLM

    from safetygrid.engines.static_decode import STOP_CHECK_EVERY, StaticDecoder

    model = AutoModelForCausalLM.from_pretrained(str(tiny_checkpoint), dtype=torch.float32).eval()
    batch = _padded_batch(tiny_checkpoint)
    full = StaticDecoder(model, 40, [], use_graph=False).decode(batch["input_ids"], batch["attention_mask"])
    # an "end token" every row has produced by step 3: decoding stops at the next stop check
    ends = {int(row[:4][-1]) for row in full}
    stopped = StaticDecoder(model, 40, sorted(ends), use_graph=False).decode(batch["input_ids"],
                                                                            batch["attention_mask"])
    assert stopped.shape[1] == STOP_CHECK_EVERY and torch.equal(stopped, full[:, :STOP_CHECK_EVERY])


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_a_cell_with_cuda_graphs_runs_the_static_decoder_and_keeps_its_rows(tiny_checkpoint, temperature, monkeypatch):
    """On a CPU ``cuda_graphs: true`` runs the static decoder's steps eagerly: the engine's rows (end
    tokens cut, finish reasons, text) are those of the dynamic-cache path on this tiny float32 model."""
    from safetygrid.engines import static_decode

    decoded = []
    original = static_decode.StaticDecoder.decode
    monkeypatch.setattr(static_decode.StaticDecoder, "decode",
                        lambda self, *args: decoded.append(len(args[0])) or original(self, *args))
    graphs = generate_cell(str(tiny_checkpoint), PROMPTS, model="tiny", engine="hf", temperature=temperature, k=2,
                           seed=11, generation={**GEN, "cuda_graphs": True}, precision={}, kv={})
    assert sum(decoded) == 6
    pd.testing.assert_frame_equal(graphs, run(tiny_checkpoint, temperature, 2))


def test_the_static_decoder_is_the_cuda_default_where_the_model_allows_it():
    from types import SimpleNamespace

    from transformers import Gemma3TextConfig, LlamaConfig

    from safetygrid.engines import EngineUnavailable
    from safetygrid.engines.hf import use_static_decoder

    llama, gemma = SimpleNamespace(config=LlamaConfig()), SimpleNamespace(config=Gemma3TextConfig())
    assert use_static_decoder(None, "cuda:0", llama, False, False)
    assert not use_static_decoder(None, "cpu", llama, False, False)
    assert use_static_decoder(True, "cpu", llama, False, False)  # asked for: the same steps, eagerly
    assert not use_static_decoder(False, "cuda", llama, False, False)
    assert not use_static_decoder(None, "cuda", gemma, False, False)  # sliding-window layers: eager decoding
    assert not use_static_decoder(None, "cuda", llama, True, False)  # a quantized KV cache keeps its path
    assert not use_static_decoder(True, "cuda", llama, False, True)  # compile makes its own static cache
    with pytest.raises(EngineUnavailable, match="sliding_attention.*cuda_graphs: false"):
        use_static_decoder(True, "cuda", gemma, False, False)
