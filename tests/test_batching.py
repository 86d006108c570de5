"""Token-budget batching: the planner's cuts by hand, and a request's tokens whatever batch it lands in."""

import pandas as pd
import pytest

from safetygrid.engines.batching import BatchLimits, next_batch, padded_tokens, plan_batches


def sizes(lengths, new_tokens, **limits):
    return [len(batch) for batch in plan_batches(lengths, new_tokens, BatchLimits(**limits))]


def test_a_batch_is_bounded_by_rows_by_padded_tokens_and_by_its_padding():
    lengths = [10, 10, 9, 3, 3, 2]
    assert padded_tokens([10, 9, 3], 2) == 3 * 12
    assert sizes(lengths, 2, padding=None) == [6]  # no bound at all: one batch
    assert sizes(lengths, 2, rows=4, padding=None) == [4, 2]
    # 12 tokens per row while a 10 leads: 3 rows fit 40; then 3s and a 2 at 5 per row
    assert sizes(lengths, 2, tokens=40, padding=None) == [3, 3]
    # padding at most 25 % of the real tokens: [10, 10, 9, 3] pads to 48 for 40 real (20 %);
    # a second 3 would pad to 60 for 45 real (33 %)
    assert sizes(lengths, 2) == [4, 2]
    assert sizes(lengths, 2, padding=0.0) == [2, 1, 2, 1]
    # a sequence longer than the budget still runs, alone
    assert sizes([100, 1, 1], 0, tokens=10, padding=None) == [1, 2]
    assert next_batch(lengths, 6, 2, BatchLimits()) == 0


def test_out_of_memory_halves_whichever_bound_let_the_batch_through():
    assert BatchLimits(rows=None, tokens=None).halved_below(8, 100) == BatchLimits(rows=4, tokens=50)
    assert BatchLimits(rows=2, tokens=1000).halved_below(2, 100) == BatchLimits(rows=1, tokens=50)
    assert BatchLimits(rows=64, tokens=4096).divided(4) == BatchLimits(rows=16, tokens=1024)
    assert BatchLimits(rows=None, tokens=3).divided(8) == BatchLimits(rows=None, tokens=1)
    with pytest.raises(ValueError, match="token budget"):
        BatchLimits(tokens=0)


# lengths from 4 to ~70 words: a long prompt padded with short ones under the row-count policy
PROMPTS = pd.DataFrame({"prompt_id": ["long", "mid", "a", "b", "c"], "text": [
    " ".join(["how do i make a cake and bread step one two three"] * 6),
    " ".join(["how do i make a cake and bread"] * 3),
    "how do i make bread", "help", "sorry cannot help here is recipe"]})


@pytest.mark.parametrize("temperature, top_p", [(0.0, 1.0), (0.9, 1.0), (1.0, 0.8)])
def test_a_requests_tokens_do_not_depend_on_the_batch_it_lands_in(tiny_checkpoint, monkeypatch, temperature, top_p):
    """The same cell under very different batchings, float32 on the CPU: every request alone; all in
    one batch padded to the longest (the row-count policy); several token budgets and row bounds.
    The rows are identical; the batchings are checked to differ, so the test compares something."""
    from safetygrid.engines import Settings
    from safetygrid.engines.hf import HFEngine
    from safetygrid.engines.cell import build_requests

    requests = build_requests(PROMPTS, "tiny", 11, 1 if temperature == 0 else 2)
    real = HFEngine._generate_batch
    seen: list[tuple[int, ...]] = []

    def recording(model, tokenizer, device, config, batch, encoded, settings, decoder, **options):
        seen.append(tuple(r.prompt_id for r in batch))
        return real(model, tokenizer, device, config, batch, encoded, settings, decoder, **options)

    monkeypatch.setattr(HFEngine, "_generate_batch", staticmethod(recording))
    batchings, tables = [], []
    for batch_size, token_budget, padding, planner in [
            (1, None, None, "padding"), (64, None, None, "padding"), (64, 120, 0.25, "padding"),
            (3, "auto", 0.25, "padding"), (64, 400, 0.25, "padding"), (2, 10_000, None, "padding"),
            # by modelled cost, the samples of a prompt sharing its prefill
            (64, "auto", None, "cost"), (4, None, None, "cost"), (64, 120, None, "cost")]:
        seen.clear()
        settings = Settings(temperature=temperature, top_p=top_p, max_new_tokens=10, batch_size=batch_size,
                            token_budget=token_budget, padding_tolerance=padding, device="cpu", planner=planner)
        tables.append(HFEngine(str(tiny_checkpoint)).generate(requests, settings))
        batchings.append(list(seen))
    assert len({tuple(b) for b in batchings}) >= 5
    assert len(batchings[1]) == 1 and set(batchings[1][0]) == set(PROMPTS["prompt_id"])  # "b" padded to "long"
    assert max(len(set(batch)) for batch in batchings[2]) < 5  # the budgets keep "long" away from "b"
    assert tables[0]["response"].str.len().gt(0).mean() > 0.5  # (a sampled answer may end at once)
    for table in tables[1:]:
        pd.testing.assert_frame_equal(table, tables[0])


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0])
def test_a_sample_is_the_same_whether_its_prompt_is_prefilled_once_or_per_row(tiny_checkpoint, monkeypatch, temperature):
    """Prefilling a prompt once for its samples (a CPU's default) against every row prefilling its
    own, float32, under both planners: identical rows, and the shared prefill did run."""
    from safetygrid.engines import Settings, hf
    from safetygrid.engines.cell import build_requests

    requests = build_requests(PROMPTS, "tiny", 11, 3)
    real, shared = hf.prefill_once_per_prompt, []

    def counting(model, input_ids, attention_mask, prompts):
        result = real(model, input_ids, attention_mask, prompts)
        shared.append(None if result is None else result[1].get_seq_length())
        return result

    monkeypatch.setattr(hf, "prefill_once_per_prompt", counting)
    for planner in ("padding", "cost"):
        tables = {}
        for share in (False, True):
            shared.clear()
            settings = Settings(temperature=temperature, max_new_tokens=10, batch_size=64, device="cpu",
                                planner=planner, share_prompts=share)
            tables[share] = hf.HFEngine(str(tiny_checkpoint)).generate(requests, settings)
            assert any(shared) == share, shared  # some batch held a prompt's samples together
        assert tables[True]["response"].str.len().gt(0).mean() > 0.5
        pd.testing.assert_frame_equal(tables[True], tables[False])


# SmolLM2-135M-Instruct's chat-template lengths of the demo's 35 prompts (config.yaml: 25 HarmBench
# behaviours, 4 of them contextual, and 10 benign ones), as benchmarks/engines.py --demo counts them
DEMO_LENGTHS = [588, 563, 398, 254, 237, 184, 49, 49, 48, 47, 47, 47, 47, 46, 46, 45, 44, 44, 44, 44, 43, 43, 42, 42,
                42, 42, 41, 41, 41, 41, 40, 40, 39, 39, 38]


def demo_rows(k):
    rows = sorted([(length, f"p{i:02d}") for i, length in enumerate(DEMO_LENGTHS)] * k, key=lambda row: (-row[0], row[1]))
    return [row[0] for row in rows], [row[1] for row in rows]


def test_the_cost_planner_cuts_the_demos_cells_as_expected():
    """The demo's sampled cell (3 samples a prompt, batch_size 64): the three longest contextual
    behaviours (398-588 tokens) together, the next three (184-254) together, the short prompts in
    two batches cut by length, never a prompt's samples split; the padding planner instead fills
    64 rows and cuts through the samples of the 237-token prompt. The greedy cell: the same three
    groups under both planners."""
    from safetygrid.engines.batching import plan_by_cost

    limits = BatchLimits(rows=64, tokens=16384)
    lengths, prompts = demo_rows(3)
    by_cost = plan_by_cost(lengths, prompts, 48, limits)
    assert [len(b) for b in by_cost] == [9, 9, 30, 57]
    assert [r for b in by_cost for r in b] == list(range(len(lengths)))
    assert all(prompts[b[0]] != prompts[b[0] - 1] for b in by_cost[1:])  # cut between prompts
    assert [len(b) for b in plan_batches(lengths, 48, limits)] == [11, 8, 64, 22]
    lengths, prompts = demo_rows(1)
    assert [len(b) for b in plan_by_cost(lengths, prompts, 48, limits)] == [3, 3, 29]
    assert [len(b) for b in plan_batches(lengths, 48, limits)] == [3, 3, 29]


def test_the_cost_planner_keeps_the_row_and_token_bounds():
    from safetygrid.engines.batching import plan_by_cost

    lengths, prompts = demo_rows(3)
    for limits in (BatchLimits(rows=8), BatchLimits(rows=64, tokens=2000), BatchLimits(rows=1)):
        batches = plan_by_cost(lengths, prompts, 48, limits)
        assert [r for b in batches for r in b] == list(range(len(lengths)))
        assert all(len(b) <= limits.rows for b in batches)
        assert all(len(b) == 1 or padded_tokens([lengths[r] for r in b], 48) <= (limits.tokens or 10**9)
                   for b in batches)
