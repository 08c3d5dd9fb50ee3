"""The README stays a short front page (at most 12,000 characters, no table cell over 300), and every relative
link of the README, docs/, CONTRIBUTING.md and benchmarks/README.md leads to a file that exists, and to a
heading of that file where the link names one."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / name for name in ("README.md", "CONTRIBUTING.md", "benchmarks/README.md")]
PAGES += sorted((REPO / "docs").glob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def without_code_blocks(markdown: str) -> str:
    return re.sub(r"(?ms)^```.*?^```", "", markdown)


def prose(markdown: str) -> str:
    """`markdown` without code blocks and inline code, where brackets are code, not links."""
    return re.sub(r"`[^`\n]*`", "", without_code_blocks(markdown))


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    headings = re.findall(r"(?m)^#+ (.+)$", without_code_blocks(page.read_text()))
    return {anchor(h) for h in headings}


def broken_links(page: Path) -> list[str]:
    """The relative links of `page` whose file is missing, or whose `#anchor` is no heading of that file."""
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.is_file() or (fragment and linked.suffix == ".md" and fragment not in anchors(linked)):
            broken.append(target)
    return broken


def test_the_readme_is_short_and_its_table_cells_are_too() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme) <= 12_000, f"README.md has {len(readme)} characters: move detail into docs/"
    rows = [line for line in without_code_blocks(readme).splitlines() if line.startswith("|")]
    long_cells = [cell.strip()[:60] for row in rows for cell in re.split(r"(?<!\\)\|", row) if len(cell) > 300]
    assert rows and not long_cells, long_cells


def test_every_relative_link_of_the_readme_and_docs_leads_somewhere() -> None:
    assert REPO / "docs" / "config.md" in PAGES and REPO / "docs" / "resume-and-clusters.md" in PAGES
    broken = {str(page.relative_to(REPO)): links for page in PAGES if (links := broken_links(page))}
    assert not broken, broken


def test_a_broken_link_is_caught(tmp_path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Which number is which\n")
    page.write_text(
        "[ok](other.md#which-number-is-which) [gone](missing.md) [bad anchor](other.md#nowhere) `[code](x.md)`\n"
        "[web](https://example.org/x.md)\n"
    )
    assert broken_links(page) == ["missing.md", "other.md#nowhere"]
