"""The settings pages (docs/methods/<paper>.md) against the presets (presets/<paper>-*.yaml): every value a page's
settings tables list is the value each preset of that paper ends up with in params.yaml, so a number copied
wrong into a preset (or a page) fails here. Presets and pages cite the papers, the official code and these
pages, never the team's private notes.

Table formats parsed (any other table on a page is prose): `| key | value | source |` (every preset of the
paper) and `| preset | key | value | source |` (one preset); key and value are `code` cells, the value in
YAML as a preset would write it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from components.config import load_params
from components.params_file import flatten_params
from components.presets import PRESET_DIR, _schema_keys, apply_preset, preset_names
from tests.conftest import copy_shipped_params

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "docs" / "methods"
NAMES = preset_names()
SHARED, ONE = ("key", "value", "source"), ("preset", "key", "value", "source")
INPUTS = {"data.root": "/data/cifar", "noise.label_file": "/data/human.pt", "model.weights": "/data/resnet50.pth"}


def _paper(preset: str) -> str:
    return preset.split("-", 1)[0]


def _code(cell: str, where: str) -> str:
    match = re.fullmatch(r"`([^`]+)`", cell)
    assert match, f"{where}: expected one `code` cell, got {cell!r}"
    return match.group(1)


def settings(page: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """({key: value} of the shared table, {preset: {key: value}} of the per-preset table) of one page."""
    shared: dict[str, Any] = {}
    per_preset: dict[str, dict[str, Any]] = {}
    header = None
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = tuple(cell.lower() for cell in cells)
            continue
        if header not in (SHARED, ONE) or not "".join(cells).strip("-: "):
            continue
        where = f"{page.name}:{number}"
        assert len(cells) == len(header), f"{where}: {len(cells)} cells under a {len(header)}-column header"
        preset = _code(cells[0], where) if header == ONE else None
        key = _code(cells[-3], where)
        value = YAML(typ="safe").load(_code(cells[-2], where))
        table = shared if preset is None else per_preset.setdefault(preset, {})
        assert key not in table, f"{where}: {key} listed twice"
        table[key] = value
    return shared, per_preset


def _effective(name: str, tmp_path: Path) -> dict[str, Any]:
    """Every params key after `lnlflow preset NAME`: the preset's values, lnlflow's defaults for the rest."""
    params = copy_shipped_params(tmp_path)
    apply_preset(params, name, INPUTS)
    return flatten_params(load_params(params))


def test_every_paper_behind_a_preset_has_a_settings_page():
    papers = {_paper(name) for name in NAMES}
    assert papers == {"ido", "metalabelnet", "clidmu", "dividemix"}
    assert papers <= {page.stem for page in PAGES.glob("*.md")}  # the other pages: methods without a preset
    keys = _schema_keys()
    for paper in papers:
        shared, per_preset = settings(PAGES / f"{paper}.md")
        assert len(shared) >= 10, f"{paper}.md: no settings table"
        assert not [key for key in shared if key not in keys], f"{paper}.md: unknown parameter"
        for preset, rows in per_preset.items():
            assert preset in NAMES and _paper(preset) == paper, f"{paper}.md names preset {preset!r}"
            assert not [key for key in rows if key not in keys], f"{paper}.md: unknown parameter"
            assert not set(rows) & set(shared), f"{paper}.md: {preset} repeats a shared key"


@pytest.mark.parametrize("name", NAMES)
def test_the_preset_sets_what_its_page_lists(name, tmp_path):
    shared, per_preset = settings(PAGES / f"{_paper(name)}.md")
    listed = {**shared, **per_preset.get(name, {})}
    actual = _effective(name, tmp_path)
    wrong = {key: (actual[key], value) for key, value in listed.items() if actual[key] != value}
    assert not wrong, f"{name}: preset value vs docs/methods/{_paper(name)}.md: {wrong}"


PRIVATE = re.compile(r"(?<!methods/)\b(?:ido|metalabelnet|clidmu|noise|baselines|architecture|stack)\.md\b|\bspecs?\b",
                     re.IGNORECASE)


@pytest.mark.parametrize("path", sorted(PRESET_DIR.glob("*.yaml")) + sorted(PAGES.glob("*.md")), ids=lambda p: p.name)
def test_presets_and_pages_cite_papers_and_pages_not_private_notes(path):
    text = path.read_text()
    assert not PRIVATE.findall(text), f"{path.name} cites {sorted(set(PRIVATE.findall(text)))}"
    if path.suffix == ".yaml":
        assert f"docs/methods/{_paper(path.stem)}.md" in text
