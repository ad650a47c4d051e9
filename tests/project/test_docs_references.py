"""References between the repository's documents stay valid, and none points outside the repository.

Scanned: README.md, docs/**/*.md, presets/*.yaml, params.yaml, pyproject.toml, the Makefile, the dvc.yaml files,
mkdocs.yml, .ci/run and every .py, .sh, .html and .js under components/, flows/, benchmarks/ and tests/. In all of them, a path `docs/…` (optionally with `#anchor`) must name an existing file or folder, and a
path to a file of the code (`components/….py`, `flows/…`, `benchmarks/…`, `presets/….yaml`, `tests/…`) an existing file; in the
markdown files, every relative link `](target)` and every snippet include `--8<-- "path"` must name an existing
file, and an `#anchor` into a markdown file must match one of its headings (slugged as the docs site slugs them, or
as GitHub does). The documents must cite the papers or a page of this repository, never notes that are not in it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

DOCS_PATH = re.compile(r"(?<![\w/.-])docs/(?:[\w./-]*[\w/-])?(?:#[\w-]+)?")  # a full stop after it ends the sentence
# a file of the code named by its path (`components/training/resume.py`, `benchmarks/results.py`, a preset)
CODE_PATH = re.compile(r"(?<![\w/.-])(?:components|flows|benchmarks|presets|tests)/[\w./-]*\.(?:py|yaml|sh|json|md)\b")
MARKDOWN_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SNIPPET = re.compile(r'^\s*--8<--\s+"([^"]+)"', re.M)
FENCE = re.compile(r"^(\s*)(```|~~~)")
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXPLICIT_ID = re.compile(r"\{[^}]*#([\w-]+)[^}]*\}\s*$")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)
# Notes that were never part of the repository: the team's private design documents, cited as `ido.md §3.3`,
# `specs/…` or a bare `spec §4.8`.
NOTES = re.compile(r"\b(architecture|ido|metalabelnet|clidmu|baselines|noise|stack)\.md,?\s*(?:§|sections?\b)"
                   r"|specs/|\bspecs?\s*§")
# outside markdown (where `noise.md` may be a sibling page), a bare note name is a citation too
BARE_NOTE = re.compile(r"(?<![/\w.-])(architecture|ido|metalabelnet|clidmu|baselines|noise|stack)\.md\b")


def scanned_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "params.yaml", *sorted((ROOT / "docs").rglob("*.md")),
             *sorted((ROOT / "presets").glob("*.yaml")),
             *(ROOT / name for name in ("pyproject.toml", "Makefile", "dvc.yaml", "compare/dvc.yaml", "mkdocs.yml",
                                        ".ci/run") if (ROOT / name).is_file())]
    for folder in ("components", "flows", "benchmarks", "tests"):
        files += sorted(p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".sh", ".html", ".js"))
    return files


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def without_code_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the markdown outside fenced code blocks."""
    kept, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match and (fence is None or match.group(2) == fence):
            fence = None if fence else match.group(2)
            continue
        if fence is None:
            kept.append((number, line))
    return kept


def slugs(heading: str) -> set[str]:
    """The ids a heading gets: Python-Markdown's toc slug (the docs site) and GitHub's."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    site = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    site = re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", site).strip().lower())
    github = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
    return {site, github}


def anchors(page: Path) -> set[str]:
    """Every id of `page`'s headings, counting the files it includes as snippets (as the site renders them)."""
    text = page.read_text()
    for include in SNIPPET.findall(text):
        if (ROOT / include).is_file():
            text += "\n" + (ROOT / include).read_text()
    found: set[str] = set()
    for _, line in without_code_blocks(text):
        match = HEADING.match(line)
        if not match:
            continue
        title = match.group(2)
        explicit = EXPLICIT_ID.search(title)
        if explicit:
            found.add(explicit.group(1))
            title = title[: explicit.start()]
        for slug in slugs(title):
            found |= {slug, *(f"{slug}_{n}" for n in range(1, 10)), *(f"{slug}-{n}" for n in range(1, 10))}
    return found


def problem(target: Path, anchor: str | None) -> str | None:
    """Why `target#anchor` dangles, or None."""
    if not target.exists():
        return "no such file or folder"
    if anchor and target.suffix == ".md" and anchor not in anchors(target):
        return f"no heading #{anchor} in {rel(target)}"
    return None


def references(path: Path) -> Iterator[tuple[int, str, Path, str | None]]:
    """(line, as written, target path, anchor) of every reference in `path` to a file in the repository."""
    text = path.read_text()
    for number, line in enumerate(text.splitlines(), 1):
        for match in DOCS_PATH.finditer(line):
            target, _, anchor = match.group(0).partition("#")
            yield number, match.group(0), ROOT / target, anchor or None
        for match in CODE_PATH.finditer(line):
            if not re.search(r"\*|/[A-Z_]+\.", match.group(0)):  # a pattern or a placeholder (presets/NAME.yaml)
                yield number, match.group(0), ROOT / match.group(0), None
    if path.suffix != ".md":
        return
    for number, line in without_code_blocks(text):
        for target in MARKDOWN_LINK.findall(INLINE_CODE.sub("", line)):
            if SCHEME.match(target) or target.startswith("/"):
                continue
            file, _, anchor = target.partition("#")
            yield number, target, (path.parent / file) if file else path, anchor or None
    for include in SNIPPET.findall(text):
        yield text[: text.index(include)].count("\n") + 1, include, ROOT / include, None


def test_every_reference_to_a_file_or_heading_of_the_repository_exists():
    dangling = []
    for path in scanned_files():
        for number, written, target, anchor in references(path):
            if why := problem(target, anchor):
                dangling.append(f"{rel(path)}:{number}: {written} ({why})")
    assert not dangling, "dangling references:\n" + "\n".join(dangling)


def test_the_reference_check_catches_a_missing_file_and_a_missing_heading(tmp_path):
    assert problem(ROOT / "docs" / "no-such-page.md", None) == "no such file or folder"
    assert problem(ROOT / "docs" / "pipeline.md", "no-such-heading")
    assert problem(ROOT / "docs" / "pipeline.md", "resuming-after-a-crash") is None
    assert problem(ROOT / "docs" / "methods" / "ido.md", "the-strong-view-idos-randaugment-pool") is None
    page = tmp_path / "page.md"
    page.write_text("See [x](missing.md), `[y](ignored.md)`, [z](#here).\n\n## Here\n\n```\n[w](also-ignored.md)\n```\n")
    found = [(written, why) for _, written, target, anchor in references(page) if (why := problem(target, anchor))]
    assert found == [("missing.md", "no such file or folder")]


def citations() -> list[str]:
    found = []
    for path in scanned_files():
        if path == Path(__file__).resolve():
            continue  # this file names the pattern it looks for
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found += [f"{rel(path)}:{number}: {m.group(0)}" for m in NOTES.finditer(line)]
            if path.suffix != ".md":
                found += [f"{rel(path)}:{number}: {m.group(0)}" for m in BARE_NOTE.finditer(line)]
    return found


def test_no_citation_of_notes_outside_the_repository():
    """Cite the paper (authors, venue, section, equation) or a page of this repository instead."""
    found = citations()
    assert not found, f"{len(found)} citations of notes that are not in the repository:\n" + "\n".join(found)


def test_readme_docs_presets_and_params_cite_no_notes_outside_the_repository():
    """The part of the check above that holds already: the documents a user reads."""
    found = [c for c in citations() if not c.split(":")[0].endswith(".py")]
    assert not found, "\n".join(found)


@pytest.mark.slow
def test_the_docs_site_builds_strictly(tmp_path):
    """`make docs`: mkdocs build --strict turns every warning (a broken link or anchor, a page missing from the
    nav, a snippet that cannot be found, a docstring that does not render) into an error."""
    missing = [name for name in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
               if importlib.util.find_spec(name.split(".")[0]) is None]
    if missing:
        pytest.skip(f"mkdocs is not installed ({', '.join(missing)} missing): pip install -e '.[docs]' or make install")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert (tmp_path / "site" / "index.html").is_file()
    results = (tmp_path / "site" / "results" / "index.html").read_text()
    assert "--8&lt;--" not in results and "<table>" in results  # the snippets were included, not shown
