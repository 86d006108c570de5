"""The README and the pages under docs/: every relative link and image resolves to a file, and every
#anchor to a heading of the file it points into (as GitHub makes heading anchors)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target); a target may carry a "title"
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def prose_lines(text: str) -> list[str]:
    """Every line, those inside fenced code blocks blanked (a `#` or a bracket there is code, not
    markdown), so the list's numbering is the file's."""
    lines, fenced = [], False
    for line in text.splitlines():
        fence = bool(FENCE.match(line))
        fenced ^= fence
        lines.append("" if fenced or fence else line)
    return lines


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lower case, punctuation other than - and _
    removed, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"[`*]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor; repeated headings get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        anchor = github_anchor(match.group(1))
        count = seen.get(anchor, 0)
        out.add(anchor if count == 0 else f"{anchor}-{count}")
        seen[anchor] = count + 1
    return out


def relative_links(page: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(prose_lines(page.read_text(encoding="utf-8")), start=1):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):  # inline code is not a link
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, mailto:, ...
                found.append((number, target))
    return found


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for number, target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / unquote(path_part)).resolve() if path_part else page
        where = f"{page.relative_to(root)} (line {number}): {target}"
        if not linked.exists():
            broken.append(f"{where}: no file {linked}")
        elif anchor and linked.suffix == ".md" and unquote(anchor) not in anchors(linked):
            broken.append(f"{where}: {linked.name} has no heading #{anchor}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert not broken_links(page), "\n".join(broken_links(page))


def test_the_checker_sees_a_broken_file_and_a_broken_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## Growing a grid: `twice`\n\n## Growing a grid: `twice`\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[ok](other.md#growing-a-grid-twice) [ok too](other.md#growing-a-grid-twice-1)\n"
                    "[self](#page) ![figure](missing.png) [gone](other.md#no-such-heading)\n"
                    "[web](https://example.org/x.md) `[code](nowhere.md)`\n"
                    "```\n[in a fence](nowhere.md)\n```\n")
    broken = broken_links(page, root=tmp_path)
    assert len(broken) == 2, broken
    assert "no file" in broken[0] and "missing.png" in broken[0]
    assert "no heading #no-such-heading" in broken[1]


def test_the_readme_stays_short() -> None:
    """The README is what a newcomer reads in five minutes; the rest lives under docs/."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: move detail to a page under docs/"
