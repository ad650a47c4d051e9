"""`lnlflow review serve|export|import`: review the flagged labels on a local page or in Label Studio, and feed the
verdicts back (`serve`: components/review/server.py).

`export --top K` writes the K most doubtful unverified labels of reports/label_issues.csv as Label Studio tasks
(with the model's guess as a pre-annotation) and the matching labeling config; `import FILE` merges a Label
Studio JSON export into the data.corrections CSV (creating it, and setting data.corrections, when there is none).
Every check runs before anything is written.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from components import paths
from components.data.rows import SPLITS, read_rows
from components.errors import LnlError
from components.io import read_json, write_json, write_text
from components.review.corrections import read_correction_rows, save_corrections
from components.stages.common import open_checked_store
from components.review.label_studio import (KEYS, chosen_class, corrections_from_export, export_tasks, label_config,
                                            merge_corrections, row_key, sample_kind)

DEFAULT_OUT = Path("review/label_studio")  # not under reports/: evaluate rewrites that DVC output
DEFAULT_CORRECTIONS = Path("corrections.csv")
PARAMS = Path("params.yaml")
_REPORT_COLUMNS = ("source_row", "given_class", "predicted_class", "p_label_wrong", "verified", "dataset_row")


def _top(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise LnlError(f"--top must be a whole number of labels to review, 1 or more (got {text!r})")
    return value


def _read_report(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows, columns = list(reader), reader.fieldnames or []
    except FileNotFoundError:
        raise LnlError(f"{path}: not found; run `dvc repro` first") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise LnlError(f"{path}: cannot read ({error}); run `dvc repro` first") from None
    if missing := [c for c in _REPORT_COLUMNS if c not in columns]:
        raise LnlError(f"{path}: lacks column(s) {', '.join(missing)}; run `dvc repro` with this lnlflow first")
    return rows


def _classes() -> list[str]:
    classes = read_json(paths.DATA_MANIFEST).get("classes")
    if not isinstance(classes, list) or not classes:
        raise LnlError(f"{paths.DATA_MANIFEST}: lacks the class list; run `dvc repro` first")
    return [str(c) for c in classes]


def export(top: int, out: Path) -> None:
    """Write out/tasks.json and out/label_config.xml for the `top` most doubtful unverified labels."""
    report = _read_report(paths.LABEL_ISSUES)
    picked = [row for row in report if row["verified"].strip() not in ("1", "true")][:top]
    if not picked:
        raise LnlError(f"{paths.LABEL_ISSUES}: every label in it is verified already; nothing to review")
    manifest, table, classes = read_json(paths.DATA_MANIFEST), read_rows(paths.ROWS_CSV), _classes()
    X = open_checked_store()
    try:
        rows = np.array([int(r["dataset_row"]) for r in picked], dtype=np.int64)
        origin = np.array([int(r["source_row"]) for r in picked], dtype=np.int64)
    except ValueError as error:
        raise LnlError(f"{paths.LABEL_ISSUES}: malformed ({error}); run `dvc repro` first") from None
    if (len(table.source_row) != len(X) or rows.min() < 0 or rows.max() >= len(X)
            or (table.source_row[rows] != origin).any()):
        raise LnlError(f"{paths.LABEL_ISSUES} does not match the data in {paths.PREPARED}; run `dvc repro` first")
    selected = picked[0].get("model_selected_by")
    version = f"lnlflow {manifest.get('name', 'model')}" + (f", selected by {selected}" if selected else "")
    samples = X.take(rows)
    try:
        tasks = export_tasks(picked, samples, classes=classes, model_version=version)
    except ValueError as error:
        raise LnlError(f"{paths.LABEL_ISSUES}: {error}; run `dvc repro` first") from None
    config = label_config(classes, kind=sample_kind(samples))
    write_json(out / "tasks.json", tasks)
    write_text(out / "label_config.xml", config)
    more = "" if len(picked) == top else f" (all there are; {top} asked)"
    print(f"review: wrote {len(tasks)} task(s){more} to {out / 'tasks.json'} and the labeling config to "
          f"{out / 'label_config.xml'}; in Label Studio: create a project, paste label_config.xml under Settings → "
          "Labeling Interface → Code, import tasks.json, review, then Export → JSON and run "
          "`lnlflow review import FILE`")


def _check_known(rows: list[dict], source: Path) -> None:
    """Every imported row names a training or validation sample of this project's data."""
    if not rows:
        return
    table, key = read_rows(paths.ROWS_CSV), row_key(rows, str(source))
    names = table.source_row.tolist() if key == "source_row" else list(table.file)
    usable = {str(name) for name, split in zip(names, table.split.tolist()) if SPLITS[split] != "test"}
    for row in rows:
        if row[key] not in usable:
            raise LnlError(f"{source}: {key} {row[key]!r} is not a training or validation sample of this project "
                           f"({paths.ROWS_CSV}); was the Label Studio project made from another project's export?")


def import_(source: Path, corrections: Path | None) -> None:
    """Merge the Label Studio JSON export `source` into the corrections CSV."""
    from components.config import load_params

    configured = load_params(PARAMS).data.corrections
    try:
        export_data = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LnlError(f"{source}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LnlError(f"{source}: not readable JSON ({error}); export from Label Studio as JSON") from None
    classes = _classes()
    target = corrections or Path(configured or DEFAULT_CORRECTIONS)
    if not target.parent.is_dir():  # never create folders for it: a mistyped path would go unnoticed
        what = "is not a folder" if target.parent.exists() else "does not exist"
        raise LnlError(f"{target}: its folder {target.parent} {what}; create it first or name another corrections file")
    existing = read_correction_rows(target)
    try:
        new = corrections_from_export(export_data, classes=classes, key=row_key(existing, str(target)))
    except LnlError as error:
        raise LnlError(f"{source}: {error}") from None
    skipped = sum(chosen_class(task, i) is None for i, task in enumerate(export_data))
    if not new:
        raise LnlError(f"{source}: no task has a submitted annotation ({skipped} skipped); nothing imported")
    _check_known(new, source)
    merged = merge_corrections(existing, new)
    named = save_corrections(target, merged, row_key(merged, str(target)) or KEYS[0],
                             params=PARAMS if configured is None else None)
    note = ""
    if named:
        note = f"; {PARAMS} data.corrections set to {target}"
    elif corrections is not None and Path(configured) != corrections:
        note = f"; note: {PARAMS} data.corrections names {configured}, which the pipeline reads instead"
    changed = sum(bool(row["label"]) for row in new)
    verified = sum(row["trusted"] == "1" for row in new)
    print(f"review: imported {len(new)} reviewed label(s) from {source} into {target} ({changed} label(s) changed, "
          f"{len(new) - changed} kept; {verified} verified; {skipped} task(s) without a submitted annotation "
          f"skipped; {len(merged)} row(s) in the file){note}; run `dvc repro` to retrain on them")


HELP = """Review the flagged labels and feed the verdicts back: on a local page, or in Label Studio (https://labelstud.io).

  lnlflow review serve [--host H] [--port P]
      a local page (and JSON API) over reports/label_issues.csv, most probably wrong first: one key or click per
      label, each decision written at once to the data.corrections CSV (created, and named in params.yaml, when there
      is none). Loopback only by default; any other --host needs the token printed at start (default port 8765).
  lnlflow review export --top K [--out DIR]
      the K most doubtful unverified labels of reports/label_issues.csv as DIR/tasks.json (Label Studio tasks,
      the model's guess as a pre-annotation) and DIR/label_config.xml (default DIR: review/label_studio)
  lnlflow review import FILE [--corrections PATH]
      merge a Label Studio JSON export into the CSV data.corrections names (or PATH); with data.corrections: null,
      corrections.csv is created and params.yaml set to it. Reviewed rows are verified (trusted 1)."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lnlflow review", description=HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    page = sub.add_parser("serve", help="a local review page that writes each decision to the corrections CSV")
    page.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (another address needs the token)")
    page.add_argument("--port", type=int, default=8765, help="default: 8765 (0: any free port)")
    out = sub.add_parser("export", help="write Label Studio tasks for the most doubtful labels")
    out.add_argument("--top", metavar="K", required=True, help="how many labels to review")
    out.add_argument("--out", metavar="DIR", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    back = sub.add_parser("import", help="merge a Label Studio JSON export into the corrections CSV")
    back.add_argument("file", type=Path, help="the Label Studio JSON export")
    back.add_argument("--corrections", metavar="PATH", type=Path, help="default: params.yaml data.corrections")
    args = parser.parse_args(argv)
    if args.action == "serve":
        from components.review.server import serve

        serve(args.host, args.port)
    elif args.action == "export":
        export(_top(args.top), args.out)
    else:
        import_(args.file, args.corrections)
