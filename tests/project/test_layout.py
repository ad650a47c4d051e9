"""The repository's shape: tests mirror the package, and no source file grows past 400 lines."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400


def test_unit_test_folders_mirror_the_packages():
    """tests/unit/<name>/ exists only for a package components/<name>/ (or flows/), so a test is found where its
    code is."""
    packages = {p.parent.name for p in (ROOT / "components").glob("*/__init__.py")} | {"flows"}
    folders = {p.name for p in (ROOT / "tests" / "unit").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= packages, f"tests/unit folders without a package: {sorted(folders - packages)}"
    assert {"data", "methods", "training", "review", "config"} <= folders


def test_tests_live_in_unit_e2e_or_project():
    stray = [str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")]
    assert not stray, f"put these under tests/unit, tests/e2e or tests/project: {stray}"


def test_no_source_file_over_400_lines():
    long = []
    for folder in ("components", "flows", "benchmarks", "tests", "docs"):
        for path in (ROOT / folder).rglob("*.py"):
            count = len(path.read_text().splitlines())
            if count > MAX_LINES:
                long.append(f"{path.relative_to(ROOT)}: {count} lines")
    assert not long, "split these (one concern per module):\n" + "\n".join(long)
