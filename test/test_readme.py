"""README.md is the user guide: short, its quick-start commands present, its links alive.

Fast (reads text files only). The measurements live in the recipes' READMEs and the
rationale in docs/DESIGN.md; this keeps README.md from growing back into a lab notebook.
"""
import re
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MAX_LINES = 650
# Files whose relative links must resolve (the recipe READMEs that exist, e.g. a
# README.moved.md waiting to be merged, are checked too).
LINKED_DOCS = [README, REPO / "docs" / "DESIGN.md", REPO / "egs" / "librispeech" / "asr1" / "README.md"]
RECIPE_DOCS = sorted(REPO.glob("egs/*/asr1/README*.md"))

# Outputs of a benchmark that README.md shows but that are not committed yet, each with the
# command that writes it. A missing one warns instead of failing; once it exists it is
# checked like any other link (delete its entry then).
NOT_YET_COMMITTED = {}

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str):
    """The lines outside fenced code blocks, with their line numbers."""
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, formatting and punctuation dropped,
    spaces to hyphens.

    >>> slug("Stages 3–4: speaker encoder, `enroll_embed`")
    'stages-34-speaker-encoder-enroll_embed'
    """
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"[`*]", "", text.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set:
    """Every heading anchor of a Markdown text, duplicates numbered as GitHub does."""
    seen, result = {}, set()
    for _, line in prose_lines(text):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(text: str):
    """(line number, target) of every Markdown link and image outside code."""
    for number, line in prose_lines(text):
        for match in LINK.finditer(line):
            yield number, match.group(1)


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def test_readme_is_a_short_user_guide():
    lines = readme_text().splitlines()
    assert len(lines) <= MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_LINES}): move measurements to the recipe's "
        "README and rationale to docs/DESIGN.md")


def test_the_table_of_contents_links_resolve_to_headings():
    text = readme_text()
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"^##\s+(Contents|Table of contents)\b", line)),
                 None)
    assert start is not None and start < 40, "README.md has no '## Contents' near the top"
    toc = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        toc += re.findall(r"\]\(#([^)]+)\)", line)
    assert len(toc) >= 10, f"the table of contents links only {len(toc)} sections"
    missing = sorted(set(toc) - anchors(text))
    assert not missing, f"table-of-contents links without a heading in README.md: {missing}"


def test_every_anchor_link_of_the_readme_resolves():
    text = readme_text()
    own = anchors(text)
    bad = [(n, t) for n, t in links(text) if t.startswith("#") and t[1:] not in own]
    assert not bad, f"README.md links to anchors it does not have: {bad}"


@pytest.mark.parametrize("command", [
    "make test",
    "./run.sh --stage",
    "python -m diffasr.bin.serve",
])
def test_the_quick_start_commands_are_shown(command):
    assert command in readme_text(), f"README.md no longer shows `{command}`"


def test_the_set_up_command_is_shown():
    text = readme_text()
    assert "tools/install.sh" in text or "make install" in text, "README.md shows no set-up command"


def test_no_issue_numbers_in_the_readme():
    found = [(n, line.strip()) for n, line in enumerate(readme_text().splitlines(), 1)
             if re.search(r"\bissues?\s*#?\d+", line, re.IGNORECASE) or re.search(r"(?<![\w&/])#\d+\b", line)]
    assert not found, f"README.md refers to issue numbers (keep them in the recipe READMEs): {found}"


def test_every_module_the_readme_runs_exists():
    names = set(re.findall(r"python -m diffasr\.bin\.(\w+)", readme_text()))
    assert "serve" in names and "transcribe" in names
    missing = sorted(n for n in names if not (REPO / "diffasr" / "bin" / f"{n}.py").is_file())
    assert not missing, f"README.md runs modules that diffasr/bin/ does not have: {missing}"


@pytest.mark.parametrize("doc", sorted(set(LINKED_DOCS + RECIPE_DOCS)), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_to_a_file_that_exists(doc):
    assert doc.is_file(), f"{doc.relative_to(REPO)} is missing"
    text = doc.read_text(encoding="utf-8")
    own = anchors(text)
    broken = []
    for number, target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        if not path:
            if anchor not in own:
                broken.append((number, target))
            continue
        resolved = (doc.parent / path).resolve()
        if not resolved.exists():
            pending = NOT_YET_COMMITTED.get(str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else "")
            if pending:
                warnings.warn(f"{doc.relative_to(REPO)}:{number}: {target} is not committed yet ({pending})")
            else:
                broken.append((number, target))
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text(encoding="utf-8")):
            broken.append((number, target))
    assert not broken, f"{doc.relative_to(REPO)}: links to nothing: {broken}"
