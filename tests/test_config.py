import copy

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
    assert cfg["vote_threshold"] == 0.5  # a schema default was filled in
    assert cfg["generation"]["top_p"] == 1.0


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
])
def test_bad_config_fails_naming_the_key(good, mutate, key):
    bad = copy.deepcopy(good)
    mutate(bad)
    with pytest.raises(ConfigError) as err:
        validate(bad)
    assert f"  {key}:" in str(err.value), str(err.value)


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
