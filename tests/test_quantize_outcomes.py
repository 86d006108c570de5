"""Which quantize failures are results: each known "this method cannot handle this model" condition
becomes supported: false (one test each); every other failure fails the job and leaves nothing that
looks finished. And `quantizer: auto`, resolved once and recorded."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

import safetygrid.quantize.llama_cpp as llama_cpp_tools
from safetygrid.quantize import UnsupportedPrecision, quantize
from safetygrid.quantize.llama_cpp import convert_to_gguf
from safetygrid.quantize.quantizer import (RESOLVED_KEY, Resolution, chosen, recorded, resolution_problems,
                                           resolved_spec)

# fake convert_hf_to_gguf.py bodies: what llama.cpp's converter prints when it cannot handle a model
# (its conversion/ sources), and the ways it dies otherwise
CANNOT_HANDLE = {
    "architecture": ('import logging, sys\nlogging.basicConfig()\n'
                     'logging.getLogger("hf-to-gguf").error("Model FooForCausalLM is not supported")\nsys.exit(1)\n',
                     "does not know the architecture FooForCausalLM"),
    "pre-tokenizer": ('raise NotImplementedError("BPE pre-tokenizer was not recognized - update get_vocab_base_pre()")\n',
                      "does not know this tokenizer's pre-tokenizer"),
    "feature": ('raise NotImplementedError("The rope scaling type yarn9 is not supported yet")\n',
                "has not implemented a feature of this model (The rope scaling type yarn9"),
    "tensor": ('raise ValueError("Can not map tensor \'model.mystery.weight\'")\n',
               "no GGUF name for the tensor 'model.mystery.weight'"),
}
BROKEN = {
    "killed (out of memory)": ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "killed by signal 9"),
    "missing import": ("import sentencepiece_that_is_not_installed\n", "ModuleNotFoundError"),
    "full disk": ("raise OSError(28, 'No space left on device')\n", "No space left on device"),
    "generic exit": ("import sys\nprint('something went wrong', file=sys.stderr)\nsys.exit(3)\n", "exited 3"),
    "other ValueError": ("raise ValueError('could not broadcast')\n", "could not broadcast"),
}


def fake_converter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    script = tmp_path / "convert_hf_to_gguf.py"
    script.write_text(body)
    monkeypatch.setenv(llama_cpp_tools.CONVERT_SCRIPT_ENV, str(script))


@pytest.mark.parametrize("case", CANNOT_HANDLE)
def test_a_converter_that_cannot_handle_the_model_is_unsupported(case, tmp_path, monkeypatch):
    body, reason = CANNOT_HANDLE[case]
    fake_converter(tmp_path, monkeypatch, body)
    with pytest.raises(UnsupportedPrecision, match=re.escape(reason)):
        convert_to_gguf(tmp_path, tmp_path / "out.gguf")


@pytest.mark.parametrize("case", BROKEN)
def test_any_other_converter_failure_fails_the_job(case, tmp_path, monkeypatch):
    body, says = BROKEN[case]
    fake_converter(tmp_path, monkeypatch, body)
    with pytest.raises(RuntimeError, match="convert_hf_to_gguf.py") as err:
        convert_to_gguf(tmp_path, tmp_path / "out.gguf")
    assert says in str(err.value) and not isinstance(err.value, UnsupportedPrecision)


def test_through_quantize_only_the_known_condition_is_recorded(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(llama_cpp_tools, "missing_reason", lambda: None)  # llama.cpp "installed"
    spec = {"method": "gguf", "type": "Q8_0", "quantizer": "llama.cpp"}
    fake_converter(tmp_path, monkeypatch, CANNOT_HANDLE["architecture"][0])
    status = quantize(tiny_checkpoint, tmp_path / "unknown-arch", spec)
    assert status["supported"] is False and "FooForCausalLM" in status["reason"]
    assert json.loads((tmp_path / "unknown-arch" / "status.json").read_text())["supported"] is False
    fake_converter(tmp_path, monkeypatch, BROKEN["killed (out of memory)"][0])
    with pytest.raises(RuntimeError, match="killed by signal 9"):
        quantize(tiny_checkpoint, tmp_path / "killed", spec)
    assert not (tmp_path / "killed").exists()  # nothing that looks finished, no "unsupported"


def test_a_failed_llama_cpp_quantization_says_how_much_disk_was_free(tmp_path, monkeypatch):
    """llama.cpp reports a full disk only as an iostream error; the job's message gives the room."""
    import types

    fake = types.SimpleNamespace(llama_model_quantize_default_params=lambda: types.SimpleNamespace(),
                                 LLAMA_FTYPE_MOSTLY_Q8_0=7, llama_model_quantize=lambda *args: 1)
    monkeypatch.setitem(sys.modules, "llama_cpp", fake)
    source = tmp_path / "source.gguf"
    source.write_bytes(b"\0" * 3 * 2**20)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: types.SimpleNamespace(free=int(1.25 * 2**30)))
    with pytest.raises(RuntimeError, match=r"failed on Q8_0 \(return code 1\).*1,280 MiB free on .*needs up to 3 MiB"):
        llama_cpp_tools.quantize_gguf(source, tmp_path / "out.gguf", "Q8_0")
    with pytest.raises(RuntimeError, match=r"1,280 MiB free on .*its input .*missing.gguf does not exist"):
        llama_cpp_tools.quantize_gguf(tmp_path / "missing.gguf", tmp_path / "out.gguf", "Q8_0")


def test_a_gguf_that_does_not_load_back_into_the_architecture_is_unsupported(tiny_checkpoint, tmp_path, monkeypatch):
    import safetygrid.quantize.gguf_ladder as ladder
    from safetygrid.models.fetch import GGUFWeightsMismatch

    monkeypatch.setattr(llama_cpp_tools, "missing_reason", lambda: None)
    monkeypatch.setattr(llama_cpp_tools, "convert_to_gguf", lambda source, out: out.write_bytes(b""))
    monkeypatch.setattr(llama_cpp_tools, "quantize_gguf", lambda src, out, type_name, **kw: out.write_bytes(b""))

    def mismatch(path, config):  # type: ignore[no-untyped-def]
        raise GGUFWeightsMismatch("missing ['model.layers.0.mlp.up_proj.weight']")

    monkeypatch.setattr(ladder, "model_from_gguf", mismatch)
    status = quantize(tiny_checkpoint, tmp_path / "q8", {"method": "gguf", "type": "Q8_0", "quantizer": "llama.cpp"})
    assert status["supported"] is False and "does not load back into the architecture" in status["reason"]


def test_a_model_with_no_matrix_of_whole_blocks_is_unsupported_by_the_gguf_package(tiny_checkpoint, tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    narrow = tmp_path / "narrow"
    config = LlamaConfig(vocab_size=40, hidden_size=24, intermediate_size=40, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(narrow)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_checkpoint / name).exists():
            shutil.copy(tiny_checkpoint / name, narrow / name)
    status = quantize(narrow, tmp_path / "q8", {"method": "gguf", "type": "Q8_0", "quantizer": "gguf"})
    assert status["supported"] is False and "no weight of this model has rows that split into Q8_0 blocks of 32" \
        in status["reason"]


def test_a_spec_the_schema_would_refuse_fails_instead_of_being_unsupported(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        quantize(tiny_checkpoint, tmp_path / "magic", {"method": "magic"})
    with pytest.raises(ValueError, match="unknown GGUF type 'Q1_0'"):
        quantize(tiny_checkpoint, tmp_path / "q1", {"method": "gguf", "type": "Q1_0", "quantizer": "gguf"})
    assert not (tmp_path / "magic").exists() and not (tmp_path / "q1").exists()


def test_auto_is_resolved_into_the_spec_and_recorded_in_status(tiny_checkpoint, tmp_path, monkeypatch):
    gguf = {"method": "gguf", "type": "Q8_0", "quantizer": "auto"}
    here = Resolution("gguf", "llama-cpp-python is not installed")
    spec = resolved_spec(gguf, here)
    assert spec == {**gguf, RESOLVED_KEY: "gguf"}
    # explicit quantizers, other methods and unresolved specs are left as they are (so their finished
    # jobs' params do not change)
    assert resolved_spec({**gguf, "quantizer": "gguf"}, here) == {**gguf, "quantizer": "gguf"}
    assert resolved_spec({"method": "gptq", "bits": 4}, here) == {"method": "gptq", "bits": 4}
    # the recorded resolution wins over this interpreter's: a node without llama.cpp does not quietly
    # make gguf-package weights for a precision resolved to llama.cpp
    monkeypatch.setattr(llama_cpp_tools, "missing_reason", lambda: "llama-cpp-python is not installed")
    assert chosen({**gguf, RESOLVED_KEY: "llama.cpp"}) == "llama.cpp" and chosen(gguf) == "gguf"
    with pytest.raises(RuntimeError, match="quantizer: llama.cpp"):
        quantize(tiny_checkpoint, tmp_path / "node", {**gguf, RESOLVED_KEY: "llama.cpp"})
    status = quantize(tiny_checkpoint, tmp_path / "q8", spec)
    assert status["args"][RESOLVED_KEY] == "gguf" and status["quantizer"] == "gguf" and recorded(status) == "gguf"


def test_resolution_problems_name_the_key_both_resolutions_and_the_way_on(tmp_path):
    precisions = {"q8": {"method": "gguf", "type": "Q8_0", "quantizer": "auto"},
                  "q4km": {"method": "gguf", "type": "Q4_K_M", "quantizer": "auto"},
                  "mine": {"method": "gguf", "type": "Q8_0", "quantizer": "gguf"}}
    for model, made in (("a", "llama.cpp"), ("b", "gguf")):
        for name in ("q8", "mine"):
            folder = tmp_path / "models" / model / name
            folder.mkdir(parents=True)
            (folder / "status.json").write_text(json.dumps({"supported": True, "quantizer": made, "args": {}}))
    problems = resolution_problems(precisions, ["a", "b"], Resolution("gguf", "no llama.cpp here"), tmp_path)
    assert len(problems) == 2, problems
    q4km, q8 = sorted(problems)
    assert "precisions.q4km.quantizer" in q4km and "K-quant Q4_K_M" in q4km
    assert q8.startswith("  precisions.q8.quantizer: auto resolves to gguf on this machine (no llama.cpp here)")
    assert f"made by llama.cpp: {tmp_path}/models/a/q8 (llama.cpp)" in q8 and "/models/b/" not in q8
    assert "set precisions.q8.quantizer: gguf" in q8
    # where auto resolves as the checkpoints were made, nothing is said
    assert resolution_problems({"q8": precisions["q8"]}, ["b"], Resolution("gguf", ""), tmp_path) == []


@pytest.mark.llamacpp
def test_the_real_converter_says_what_cannot_convert_reason_reads(tiny_checkpoint, tmp_path):
    """llama.cpp's own convert_hf_to_gguf.py (in .venvs/quantize) on an architecture it has no class
    for: its message is the one CANNOT_CONVERT matches, so the fake converters above are faithful."""
    import subprocess

    from components import component_unavailable

    python = Path(__file__).resolve().parents[1] / ".venvs" / "quantize" / "bin" / "python"
    probe = "from safetygrid.quantize.llama_cpp import missing_reason; print(missing_reason() or '')"
    found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    if found.returncode != 0 or found.stdout.strip():
        component_unavailable(f"llama.cpp is not usable in .venvs/quantize (make envs-llamacpp): "
                              f"{found.stdout}{found.stderr}")
    mystery = tmp_path / "mystery"
    shutil.copytree(tiny_checkpoint, mystery)
    config = json.loads((mystery / "config.json").read_text())
    config["architectures"] = ["SafetygridMysteryForCausalLM"]
    (mystery / "config.json").write_text(json.dumps(config))
    code = ("import sys; from pathlib import Path; from safetygrid.quantize import UnsupportedPrecision\n"
            "from safetygrid.quantize.llama_cpp import convert_to_gguf\n"
            "try:\n    convert_to_gguf(Path(sys.argv[1]), Path(sys.argv[2]))\n"
            "except UnsupportedPrecision as exc:\n    print('UNSUPPORTED', exc)\n")
    result = subprocess.run([str(python), "-c", code, str(mystery), str(tmp_path / "out.gguf")],
                            capture_output=True, text=True, timeout=600)
    assert "UNSUPPORTED llama.cpp's converter does not know the architecture SafetygridMysteryForCausalLM" \
        in result.stdout, result.stdout + result.stderr[-3000:]
