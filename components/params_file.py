"""Edit params.yaml in place from dotted-key overrides, keeping everything else byte for byte.

`apply_overrides(path, {"stage2.lr": 0.01})` changes that one line: comments, key order, sections, quoting
and the file mode stay as they were. The merged result is validated before anything is written, and the
file is replaced atomically. `flatten_params(params)` gives the dotted keys the overrides use.
"""

from __future__ import annotations

import difflib
import io
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import ScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from components.config import Params, load_params, read_yaml, validate_params
from components.errors import LnlError


def _leaves(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    """(dotted key, path) of every leaf field of `model`: only pydantic sub-model fields are descended into."""
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield from ((f"{prefix}{name}.{key}", [name, *path]) for key, path in _leaves(kind))
        else:
            yield f"{prefix}{name}", [name]


def flatten_params(params: BaseModel) -> dict[str, Any]:
    """Dotted key → JSON-ready value for every leaf of `params` (a dict-valued field is one key)."""
    dumped = params.model_dump(mode="json")
    out = {}
    for key, path in _leaves(type(params)):
        value = dumped
        for part in path:
            value = value[part]
        out[key] = value
    return out


def _plain(value: Any) -> Any:
    """A JSON/YAML-ready copy: tuples become lists, nested mappings plain dicts."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _set(tree: dict, path: list[str], value: Any, *, make: type = dict) -> None:
    """tree[path[0]]...[path[-1]] = value, creating missing sections; keeps a quoted string's quoting style."""
    for part in path[:-1]:
        if not isinstance(tree.get(part), Mapping):
            tree[part] = make()
        tree = tree[part]
    old = tree.get(path[-1])
    tree[path[-1]] = type(old)(value) if isinstance(old, ScalarString) and isinstance(value, str) else value


class _NullRepresenter(RoundTripRepresenter):
    """Writes None as `null`, for this module's YAML only. `add_representer` is a classmethod: called on the
    shared RoundTripRepresenter it changed every later round-trip dump in the process, DVC's dvc.lock included
    (a Prefect flow run, which edits params.yaml and then reproduces in-process, wrote `data.classes: null`
    where `dvc repro` writes `data.classes:`)."""


_NullRepresenter.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))


def _yaml(text: str) -> YAML:
    """A round-trip YAML that writes this file's indentation, `null` and long lines as they are."""
    _, sequence, offset = load_yaml_guess_indent(text)
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith(("#", "- "))]
    nested = next((len(b) - len(b.lstrip()) for a, b in zip(lines, lines[1:])
                   if a.rstrip().endswith(":") and not a[0].isspace() and b[0].isspace()), 2)
    rt = YAML(typ="rt")
    rt.Representer = _NullRepresenter
    rt.preserve_quotes = True
    rt.width = 1 << 16
    rt.indent(mapping=nested, sequence=sequence or nested, offset=offset or 0)
    return rt


def _dump(rt: YAML, doc: Any) -> str:
    out = io.StringIO()
    rt.dump(doc, out)
    return out.getvalue()


def _patch(original: str, before: str, after: str) -> str:
    """`after`, unless the round trip renders untouched lines differently (`~` nulls, say): then apply only the
    lines that changed from `before` to `after` to the original text, when the two align line for line."""
    old, ref, new = (t.splitlines(keepends=True) for t in (original, before, after))
    if before == original or len(old) != len(ref):
        return after
    for tag, i1, i2, j1, j2 in reversed(difflib.SequenceMatcher(None, ref, new, autojunk=False).get_opcodes()):
        if tag != "equal":
            old[i1:i2] = new[j1:j2]
    return "".join(old)


def _write_atomic(path: Path, text: str, mode: int) -> None:
    """Replace `path` by `text` through a temporary file in the same folder, with the file mode `mode`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply_overrides(path: Path, overrides: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Set dotted keys (e.g. "stage2.lr") in the YAML file `path`; returns {key: (old, new)} for what changed.

    Nothing is written when no value changes. An unknown key or a value the schema rejects raises one
    `LnlError` naming it, and leaves the file untouched.
    """
    path = Path(path)
    current = load_params(path)  # the file as every stage reads it, with the same errors
    text = path.read_text()
    rt = _yaml(text)
    doc = rt.load(text)
    paths = dict(_leaves(Params))
    unknown = [key for key in overrides if key not in paths]
    if unknown:
        near = difflib.get_close_matches(unknown[0], paths, n=1)
        raise LnlError(f"{path}: unknown parameter '{unknown[0]}'" + (f" (did you mean '{near[0]}'?)" if near else ""))
    merged = read_yaml(path)
    for key, value in overrides.items():
        _set(merged, paths[key], _plain(value))
    updated = validate_params(merged, source=f"{path} with overrides")
    before, after = flatten_params(current), flatten_params(updated)
    changed = {key: (before[key], after[key]) for key in overrides if before[key] != after[key]}
    if not changed:
        return {}
    untouched = _dump(rt, doc)
    for key in changed:
        _set(doc, paths[key], _plain(overrides[key]), make=CommentedMap)
    new_text = _patch(text, untouched, _dump(rt, doc))
    if validate_params(YAML(typ="safe").load(new_text), source=str(path)) != updated:  # the text says what we checked
        raise LnlError(f"{path}: could not write the overrides faithfully; file left unchanged")
    target = path.resolve()  # a symlinked params.yaml stays a link
    _write_atomic(target, new_text, target.stat().st_mode & 0o7777)
    return changed
