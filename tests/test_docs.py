"""The documentation against the code: the generated reference pages are current, the
summary.csv columns documented are the summary's, every link between the pages resolves, and
nothing points outside the repository."""

import re
import subprocess
import sys

import pytest

from harness import ROOT
from harness.results import summary

pytestmark = pytest.mark.fast  # starts no server: make test-fast

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_generated_reference_pages_match_the_code():
    result = subprocess.run(
        [sys.executable, "-m", "harness", "docs", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_readme_is_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def _summary_table(text):
    section = text.split("## Reading summary.csv", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([a-z0-9_]+)`", line.split("|")[1]))
    return names


def test_every_summary_column_is_documented_and_only_those():
    documented = _summary_table((ROOT / "docs" / "reference.md").read_text())
    assert documented == set(summary.COLUMNS), (
        f"undocumented: {sorted(set(summary.COLUMNS) - documented)}; "
        f"not columns: {sorted(documented - set(summary.COLUMNS))}"
    )


def anchors(path):
    """GitHub's anchors of a Markdown file's headings."""
    out = set()
    for line in path.read_text().splitlines():
        if m := re.match(r"^#{1,6} (.*)", line):
            out.add(re.sub(r"[^\w\- ]", "", m[1].strip().lower()).replace(" ", "-"))
    return out


def test_every_link_between_the_pages_resolves():
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
        for target in LINK.findall(text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_every_page_is_reachable_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in LINK.findall((ROOT / "README.md").read_text())}
    assert {p for p in PAGES[1:] if p.resolve() not in linked} == set()


def test_nothing_in_the_repository_points_outside_it():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    outside = []
    for name in tracked:
        path = ROOT / name
        if path.is_file() and path.suffix not in {".png", ".whl", ".gz"}:
            if "../" + "shared" in path.read_text(errors="replace"):
                outside.append(name)
    assert outside == []
