"""The run's report: results/report/index.html, one self-contained page that opens with the judges
against people and the deployment card, and its figures (PNG + SVG)."""

from __future__ import annotations

from .html import write_report

__all__ = ["write_report"]
