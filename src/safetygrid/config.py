"""Load a grid config, fill schema defaults, and check it: every error names the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config that the schema or a cross-reference check rejects."""


def _extend_with_defaults(validator_class: type) -> type:
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for prop, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    instance.setdefault(prop, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _extend_with_defaults(jsonschema.Draft202012Validator)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - allowed)
        if extra:
            parts.append(extra[0])
    return ".".join(parts) or "<top level>"


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def validate(config: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return a copy of ``config`` with defaults filled in, or raise ConfigError naming each bad key."""
    filled = copy.deepcopy(dict(config))
    validator = _Validator(schema or load_schema())
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"  {_key_path(e)}: {e.message}" for e in errors]
        raise ConfigError("invalid config:\n" + "\n".join(lines))
    _check_references(filled)
    _resolve_protocols(filled)
    _check_study(filled)
    return canonical(filled)


def _resolve_protocols(config: dict[str, Any]) -> None:
    """Each LM judge's protocol, written into its entry only when it is native (so an instruct
    judge's entry, and with it its finished jobs, stays as it was)."""
    from .judges.native import resolve_protocol

    problems = []
    for name, judge in config["judges"].items():
        if "model" not in judge:
            if "protocol" in judge:
                problems.append(f"  judges.{name}.protocol: kind {judge['kind']} has no model, hence no protocol")
            continue
        entry = config.get("judge_models", {}).get(judge["model"]) or config["models"].get(judge["model"], {})
        try:
            protocol = resolve_protocol(name, judge, entry.get("source"))
        except ValueError as exc:
            problems.append(f"  {exc}")
            continue
        if protocol is None:
            if judge.get("protocol") == "auto":
                del judge["protocol"]
        else:
            judge["protocol"] = protocol
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(problems))


def _check_references(config: Mapping[str, Any]) -> None:
    from .prompts import check_options

    problems = []
    for role, chosen in config["prompts"].items():
        problems += check_options(chosen["promptset"], chosen, where=f"prompts.{role}")
    baseline = config["baseline"]
    if baseline["precision"] not in config["precisions"]:
        problems.append(f"  baseline.precision: '{baseline['precision']}' is not an entry of precisions")
    if baseline["kv"] not in config["kv"]:
        problems.append(f"  baseline.kv: '{baseline['kv']}' is not an entry of kv")
    known_models = set(config["models"]) | set(config.get("judge_models", {}))
    for name, judge in config["judges"].items():
        if "model" in judge and judge["model"] not in known_models:
            problems.append(f"  judges.{name}.model: '{judge['model']}' is not an entry of judge_models or models")
        if "precision" in judge:
            if judge["precision"] not in config["precisions"]:
                problems.append(f"  judges.{name}.precision: '{judge['precision']}' is not an entry of precisions")
            if judge.get("model") not in config["models"]:
                problems.append(f"  judges.{name}.precision: only a model under study (an entry of models) is made at "
                                f"each precision; '{judge.get('model')}' is not one")
        for key, kind in (("policies", "shieldgemma"), ("threshold", "strongreject")):
            if key in judge and judge["kind"] != kind:
                problems.append(f"  judges.{name}.{key}: only a {kind} judge takes it (this one is {judge['kind']})")
    validation = config.get("validation", {})
    human_rows = bool(validation.get("labelled")) or validation.get("sets", {}).get("pyrit_objective", 0) != 0
    lead = config.get("ensemble_label", "majority")
    from .judge_axes import gives_unsafe

    raters = [name for name, judge in config["judges"].items() if gives_unsafe(judge)]
    if not raters:
        problems.append("  judges: every judge labels the refusal axis alone (kind refusal_lm); the unsafe label needs "
                        "at least one judge of another kind")
    if lead == "dawid_skene" and len(raters) < 3:
        problems.append(f"  ensemble_label: dawid_skene needs at least three judges of the unsafe axis, the config has "
                        f"{len(raters)}")
    for name in config.get("refusal_judges") or []:
        if name not in config["judges"]:
            problems.append(f"  refusal_judges: '{name}' is not an entry of judges ({', '.join(sorted(config['judges']))})")
    if lead == "stacked" and not human_rows:
        problems.append("  ensemble_label: stacked is fitted on human labels, but validation has no unsafe-labelled rows "
                        "(validation.sets.pyrit_objective is 0 and validation.labelled is empty)")
    gguf_only = {name for name, entry in [*config["models"].items(), *config.get("judge_models", {}).items()]
                 if entry.get("weights") == "gguf"}
    for name in sorted(gguf_only & set(config["models"])):
        problems += [f"  {line}" for line in gguf_only_model_problems(name, config["models"][name], config["precisions"])]
    for name, judge in config["judges"].items():
        if judge.get("model") in gguf_only and judge.get("engine", "hf") != "llama_cpp":
            problems.append(f"  judges.{name}.engine: its model {judge['model']} keeps only its GGUF file "
                            "(weights: gguf), so the judge needs engine: llama_cpp")
        if judge.get("calibrate") and not human_rows:
            problems.append(f"  judges.{name}.calibrate: calibration needs human labels, but validation has no "
                            "unsafe-labelled rows")
    tasks = config.get("quality", {}).get("tasks", [])
    for name in config.get("hidden_danger", {}).get("quality", []):
        if name != "perplexity" and name not in tasks:
            problems.append(f"  hidden_danger.quality: '{name}' is neither perplexity nor a task of quality.tasks "
                            f"({', '.join(tasks) or 'none configured'})")
    import glob

    for i, pattern in enumerate(config.get("labels", {}).get("files", [])):
        if not glob.has_magic(pattern) and not Path(pattern).exists():
            problems.append(f"  labels.files[{i}]: {pattern} does not exist (a glob such as resources/labels/*.csv "
                            "may match nothing yet; a named file must exist)")
    clash = set(config["models"]) & set(config.get("judge_models", {}))
    for name in sorted(clash):
        problems.append(f"  judge_models.{name}: the name is also an entry of models")
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(problems))


def gguf_only_model_problems(name: str, model: Mapping[str, Any], precisions: Mapping[str, Any]) -> list[str]:
    """Why a model under study that keeps only its GGUF file (``weights: gguf``: no safetensors are
    written) cannot be served at every precision of the grid: each precision must be a GGUF type
    that llama.cpp makes from that file and serves (transformers, vLLM and llm-compressor read
    safetensors)."""
    problems = []
    if model.get("engine", "hf") != "llama_cpp":
        problems.append(f"models.{name}.engine: the model keeps only its GGUF file (weights: gguf), so it needs "
                        f"engine: llama_cpp (it is {model.get('engine', 'hf')})")
    for precision, spec in precisions.items():
        if spec["method"] != "gguf":
            problems.append(f"precisions.{precision}.method: {spec['method']} reads safetensors, and model {name} keeps "
                            "only its GGUF file (weights: gguf); use method: gguf (type F32 for a float32 baseline) "
                            "or drop weights: gguf")
        elif spec.get("quantizer") == "gguf":
            problems.append(f"precisions.{precision}.quantizer: the gguf package quantizes safetensors, and model {name} "
                            "keeps only its GGUF file (weights: gguf); use quantizer: llama.cpp or auto")
        elif spec.get("engine", "llama_cpp") != "llama_cpp":
            problems.append(f"precisions.{precision}.engine: {spec['engine']} reads safetensors, and model {name} keeps "
                            "only its GGUF file (weights: gguf)")
    return problems


# (lower key, upper key) of each block whose two thresholds bound a band: the lower may not exceed
# the upper (equal leaves the band empty, which switches it off)
THRESHOLD_PAIRS = {
    "hidden_danger": ("near_drop_pp", "refusal_drop_pp"),
    "deployment_card": ("caution_pp", "unsafe_pp"),
}


def _check_study(config: Mapping[str, Any]) -> None:
    """Refuse a config that validates but cannot give the study's numbers: no baseline cell, prompt
    sets in the wrong role, inverted thresholds, a quantizer asked for a type it lacks, or a
    resource file that is not there. Each line names the key."""
    from .prompts import PROMPTSETS
    from .quantize.quantizer import K_QUANTS
    from .resource_files import missing_files

    problems = []
    if not any(float(t) == 0.0 for t in config["temperatures"]):
        baseline = config["baseline"]
        problems.append(f"  temperatures: no temperature 0, so no model has its baseline cell (baseline.precision "
                        f"{baseline['precision']}, baseline.kv {baseline['kv']}, at temperature 0) and every "
                        "contrast and CDI would be NA; add 0.0")
    for role, harmful in (("harmful", True), ("benign", False)):
        pick = config["prompts"].get(role)
        if pick and PROMPTSETS[pick["promptset"]].harmful != harmful:
            kind = "a benign" if harmful else "a harmful"
            problems.append(f"  prompts.{role}.promptset: {pick['promptset']} is {kind} prompt set; the {role} role "
                            f"takes one of {', '.join(n for n, s in PROMPTSETS.items() if s.harmful == harmful)}")
    for block, (lower, upper) in THRESHOLD_PAIRS.items():
        values = config.get(block, {})
        if lower in values and upper in values and values[lower] > values[upper]:
            problems.append(f"  {block}.{lower}: {values[lower]} is above {block}.{upper} ({values[upper]}); "
                            f"the {lower} band starts below {upper}")
    for name, spec in config["precisions"].items():
        if spec["method"] == "gguf" and spec.get("quantizer") == "gguf" and spec["type"] in K_QUANTS:
            problems.append(f"  precisions.{name}.type: {spec['type']} is a K-quant, which only llama.cpp's quantizer "
                            "makes, and quantizer is gguf (the gguf package's quantizers); use quantizer: llama.cpp "
                            "or auto, or a type the package makes")
    problems += missing_files(config)
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(problems))


def canonical(value: Any) -> Any:
    """``value`` with every mapping's keys sorted, recursively. Snakemake compares a job's params
    in order, so without this, reordering keys in a YAML file would rerun finished cells."""
    if isinstance(value, Mapping):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a grid with two entries of one name
    (a precision or judge listed twice, edited apart) must fail instead."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1}, first at line "
                                  f"{seen[key] + 1})")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def check_duplicate_keys(path: str | Path) -> None:
    """Raise ConfigError naming the file, key and lines when a mapping repeats a key."""
    try:
        yaml.load(Path(path).read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    check_duplicate_keys(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return validate(raw)


def _resolve(schema: Mapping[str, Any], node: Any) -> Any:
    if isinstance(node, dict) and "$ref" in node:
        target: Any = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def reference_rows(schema: Mapping[str, Any] | None = None) -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) of every key the schema knows, in schema order; ``<name>``
    stands for a user-chosen entry name, and keys that only some kinds take say which."""
    schema = schema or load_schema()
    rows: list[tuple[str, str, str, str]] = []

    def kind_of(node: Mapping[str, Any]) -> str:
        if "enum" in node:
            return " \\| ".join(str(v) for v in node["enum"])
        kind = node.get("type", "oneOf" if "oneOf" in node else "")
        return " or ".join(map(str, kind)) if isinstance(kind, list) else str(kind)

    def walk(node: Any, path: str, only: str = "") -> None:
        node = _resolve(schema, node)
        if not isinstance(node, dict):
            return
        for key, sub in node.get("properties", {}).items():
            sub = _resolve(schema, sub)
            if not isinstance(sub, dict):
                continue  # `key: true` re-admits a key described above
            default = "" if "default" not in sub else yaml.safe_dump(sub["default"], default_flow_style=True).strip()
            default = default.removesuffix("...").strip()
            description = sub.get("description", "")
            if isinstance(description, str):
                description = " ".join(description.split())
            rows.append((path + key, kind_of(sub), default, f"{only}{description}"))
            walk(sub, f"{path}{key}.", only)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{path}<name>.", only)
        for part in node.get("allOf", []):
            condition = part.get("if", {}).get("properties", {})
            label = ", ".join(f"{k} {v.get('const', '/'.join(map(str, v.get('enum', []))))}" for k, v in condition.items())
            walk(part.get("then", {}), path, f"({label}) " if label else only)

    walk(schema, "")
    return rows


def reference_markdown(schema: Mapping[str, Any] | None = None) -> str:
    """The key reference table of config/README.md, made from the schema's descriptions."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, kind, default, description in reference_rows(schema):
        cells = [f"`{key}`", kind, f"`{default}`" if default else "", description]
        lines.append("| " + " | ".join(cell.replace("|", "\\|").replace("\\\\|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
