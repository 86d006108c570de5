from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.chdir(ROOT)  # the library reads resources/ relative to the repository root, as the workflow does

WORDS = ("how do i make a cake bread bomb sorry cannot help here is recipe step one two three "
         "yes no Yes No the and of to it you sure safe unsafe 0 1 2 3 4 5").split()


def build_tiny_checkpoint(directory: Path, seed: int = 0, hidden_size: int = 32, intermediate_size: int = 64) -> Path:
    """A random 2-layer Llama with a word-level tokenizer and a chat template: real code paths,
    no download."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<eos>", "<|im_start|>", "<|im_end|>", "user", "assistant", "system"]
    vocab = {tok: i for i, tok in enumerate(specials + list(dict.fromkeys(WORDS)))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                        unk_token="<unk>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
        "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden_size, intermediate_size=intermediate_size, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=0, eos_token_id=[2, 4], bos_token_id=None, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # a random head would often pick a special token first and every answer would decode to "";
        # zero logits for the specials make the model say words, so comparisons of answers mean something
        model.lm_head.weight[:len(specials)] = 0
    model.generation_config.eos_token_id = [2, 4]
    model.generation_config.pad_token_id = 0
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CI grid run once, locally, for every workflow test. Its first tables are kept beside it
    (results/ is grown and rerun in place by later tests) in tables-first-run/."""
    from workflow_support import copy_workflow, snakemake, snapshot_tables

    # SAFETYGRID_WORKFLOW_DIR reuses a directory across runs (for iterating locally: finished jobs
    # are not redone); by default each run starts from nothing
    reuse = os.environ.get("SAFETYGRID_WORKFLOW_DIR")
    workdir = copy_workflow(Path(reuse) if reuse else tmp_path_factory.mktemp("ci-grid"))
    snakemake(workdir)
    snapshot_tables(workdir, workdir / "tables-first-run")
    return workdir
