"""The archival package of a run (one tar.gz with a manifest) and its verification."""

from __future__ import annotations

from .package import VerificationError, verify, write_archive

__all__ = ["VerificationError", "verify", "write_archive"]
