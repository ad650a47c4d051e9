"""Paper settings as presets: `presets/<name>.yaml` = a header (`preset:` paper, table, published number,
tolerance, user inputs, notes) and `overrides:` (dotted params keys → values) applied onto params.yaml.

A preset is the whole recipe: every key of the data, noise, model, augment, stage1 and stage2 sections it does
not name returns to lnlflow's default, so nothing left over from an earlier setting leaks into the run. The
user's own inputs (`INPUTS`: where the data and label files are) are never part of a preset; each preset lists
the ones it needs under `preset.inputs`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.config import Params, read_yaml
from components.errors import LnlError

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"
RECIPE_SECTIONS = ("data", "noise", "model", "augment", "stage1", "stage2")
INPUTS = {"data.root": "--root", "noise.label_file": "--label-file", "model.weights": "--weights"}
KEPT = ("data.download",)  # the user's choice, like the inputs: never reset by a preset
HEADER_KEYS = ("paper", "table", "published", "tolerance", "inputs", "notes")


@dataclass(frozen=True)
class Preset:
    """One paper setting: where it comes from, the number to reach, and the params it sets."""

    name: str
    paper: str
    table: str
    published: float | None
    metric: str
    tolerance: float | None
    tolerance_why: str
    inputs: dict[str, str]
    notes: str
    overrides: dict[str, Any]

    def target(self) -> str:
        """`73.6 ± 1.0 points`, or a dash when the specs quote no number."""
        if self.published is None:
            return f"— ({self.tolerance_why})"
        return f"{self.published:.1f} ± {self.tolerance:.1f} points"


def preset_names(folder: Path = PRESET_DIR) -> list[str]:
    """The presets shipped in `folder`, sorted."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise LnlError(f"{where}: expected a non-negative number or null (got {value!r})")
    return float(value)


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise LnlError(f"{where}: expected a mapping (got {type(value).__name__})")
    return value


@functools.cache
def _schema_keys() -> dict[str, Any]:
    """Every dotted params key, in params.yaml's order, with lnlflow's default value."""
    from components.params_file import flatten_params

    return flatten_params(Params())


def load_preset(name: str, folder: Path = PRESET_DIR) -> Preset:
    """Read and check one preset file; an unknown name is one error listing the valid ones."""
    names = preset_names(folder)
    if name not in names:
        raise LnlError(f"unknown preset '{name}'; valid presets: {', '.join(names) or '(none)'}")
    path = folder / f"{name}.yaml"
    raw = _mapping(read_yaml(path), str(path))
    if set(raw) != {"preset", "overrides"}:
        found = ", ".join(map(str, raw)) or "none"
        raise LnlError(f"{path}: needs exactly the sections preset and overrides (got {found})")
    head = _mapping(raw["preset"], f"{path}: preset")
    missing = [key for key in HEADER_KEYS if key not in head]
    extra = [key for key in head if key not in HEADER_KEYS]
    if missing or extra:
        problems = [f"missing {', '.join(missing)}"] * bool(missing) + [f"unknown {', '.join(map(str, extra))}"] * bool(extra)
        raise LnlError(f"{path}: preset: " + "; ".join(problems))
    published = _mapping(head["published"], f"{path}: preset.published")
    tolerance = _mapping(head["tolerance"], f"{path}: preset.tolerance")
    value = _number(published.get("value"), f"{path}: preset.published.value")
    points = _number(tolerance.get("points"), f"{path}: preset.tolerance.points")
    if value is not None and points is None:
        raise LnlError(f"{path}: preset.tolerance.points: a published number needs a tolerance")
    inputs = _mapping(head["inputs"] or {}, f"{path}: preset.inputs")
    if unknown := [key for key in inputs if key not in INPUTS]:
        raise LnlError(f"{path}: preset.inputs: '{unknown[0]}' is not a user input ({', '.join(INPUTS)})")
    overrides = _mapping(raw["overrides"], f"{path}: overrides")
    if unknown := [key for key in overrides if key not in _schema_keys()]:
        raise LnlError(f"{path}: overrides: unknown parameter '{unknown[0]}'")
    if clash := [key for key in overrides if key in INPUTS or key in KEPT]:
        raise LnlError(f"{path}: overrides: '{clash[0]}' is the user's to set, not a preset's "
                       "(list it under preset.inputs)")
    return Preset(name, str(head["paper"]), str(head["table"]), value, str(published.get("metric", "")), points,
                  str(tolerance.get("why", "")), {str(k): str(v) for k, v in inputs.items()},
                  str(head["notes"]).strip(), dict(overrides))


def preset_overrides(preset: Preset, current: Params, given: dict[str, str | None]) -> dict[str, Any]:
    """The dotted-key changes that turn `current` into the preset's recipe.

    `given` holds the user inputs passed on the command line (data.root → PATH, ...); an input the preset needs
    that is neither given nor already set in params.yaml is an error naming the option to pass. Inputs the preset
    does not need are cleared (a label file on synthetic noise, say, would be refused).
    """
    from components.params_file import flatten_params

    now, defaults = flatten_params(current), _schema_keys()
    absent = [key for key in preset.inputs if not given.get(key) and now.get(key) is None]
    if absent:
        key = absent[0]
        raise LnlError(f"preset '{preset.name}' needs {key}, {preset.inputs[key]}: pass {INPUTS[key]} PATH")
    wanted = {key: value for key, value in defaults.items()
              if key.split(".")[0] in RECIPE_SECTIONS and key not in INPUTS and key not in KEPT}
    wanted.update(preset.overrides)
    wanted.update({key: (given.get(key) or now.get(key)) if key in preset.inputs else None for key in INPUTS})
    return {key: wanted[key] for key in defaults
            if key in wanted and (now.get(key) != wanted[key] or key in preset.overrides)}


def apply_preset(params_path: Path, name: str, given: dict[str, str | None] | None = None,
                 folder: Path = PRESET_DIR) -> tuple[Preset, dict[str, tuple[Any, Any]]]:
    """Write preset `name` onto `params_path` (validated first; comments, order and mode kept).

    Returns the preset and {key: (old, new)} for every value that changed.
    """
    from components.config import load_params
    from components.params_file import apply_overrides

    preset = load_preset(name, folder)
    overrides = preset_overrides(preset, load_params(params_path), given or {})
    try:
        return preset, apply_overrides(Path(params_path), overrides)
    except LnlError as error:
        raise LnlError(f"preset '{name}': {error}") from None


def _show(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def listing(folder: Path = PRESET_DIR) -> str:
    """Every preset: name, paper, table, published number ± tolerance and the inputs it needs."""
    lines = []
    for name in preset_names(folder):
        p = load_preset(name, folder)
        needs = ", ".join(f"{INPUTS[key]} ({key})" for key in p.inputs) or "nothing"
        lines += [name, f"  paper:     {p.paper}", f"  table:     {p.table}",
                  f"  published: {p.target()}" + (f" — {p.metric}" if p.published is not None else ""),
                  f"  needs:     {needs}"]
    lines.append("apply one: lnlflow preset NAME [--root PATH] [--label-file PATH] [--weights PATH] "
                 "(see presets/NAME.yaml for its sources and deviations)")
    return "\n".join(lines)


HELP = f"""Without NAME: list the presets. With NAME: write that paper setting onto params.yaml.

A preset sets the whole recipe (data, noise, model, augment, stage1, stage2); every key of those sections it
does not name goes back to lnlflow's default. runtime, evaluate, compare, tracking and schedule are untouched.
The file keeps its comments, key order and mode; it is validated before anything is written.

Where your files are cannot be part of a preset. Pass them where the preset needs them (the listing says which):
  --root PATH        data.root: the folder holding cifar-10-batches-py/ or cifar-100-python/
                     (with data.download: true in params.yaml the official archive is fetched there)
  --label-file PATH  noise.label_file: the CIFAR-N file (CIFAR-10_human.pt / CIFAR-100_human.pt)
  --weights PATH     model.weights: the pretrained state_dict of a pretrained-backbone preset
An option left out keeps the value params.yaml already has; an input the preset needs that is set nowhere is
an error, and inputs a preset does not use are cleared. Paths are written as given (relative ones are read from
the project root, where the stages run). Presets live in {PRESET_DIR.name}/NAME.yaml: paper, table, published
number and tolerance, and notes on what lnlflow cannot reproduce exactly."""


def main(argv: list[str] | None = None) -> None:
    import argparse
    import os

    parser = argparse.ArgumentParser(prog="lnlflow preset", description=HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="the preset to apply (omit to list them)")
    parser.add_argument("--root", metavar="PATH", help="data.root (see above)")
    parser.add_argument("--label-file", metavar="PATH", help="noise.label_file (see above)")
    parser.add_argument("--weights", metavar="PATH", help="model.weights (see above)")
    parser.add_argument("--params", metavar="FILE", type=Path, default=Path("params.yaml"),
                        help="the file to write (default: params.yaml)")
    args = parser.parse_args(argv)
    if args.name is None:
        if any((args.root, args.label_file, args.weights)):
            parser.error("--root, --label-file and --weights need a preset NAME")
        print(listing())
        return
    given = {"data.root": args.root, "noise.label_file": args.label_file, "model.weights": args.weights}
    given = {key: os.path.expanduser(value) if value else None for key, value in given.items()}
    preset, changed = apply_preset(args.params, args.name, given)
    if not changed:
        print(f"{args.params}: already set to preset {preset.name}; nothing changed")
    else:
        print(f"{args.params}: preset {preset.name} applied, {len(changed)} value(s) changed:")
        for key, (old, new) in changed.items():
            print(f"  {key}: {_show(old)} → {_show(new)}")
    print(f"target: {preset.target()}" + (f" ({preset.metric})" if preset.published is not None else ""))
    print(f"deviations and sources: {PRESET_DIR.name}/{preset.name}.yaml; run it with: dvc repro")
