"""Label Studio round trip: flagged labels out as tasks with pre-annotations, reviewed labels back as corrections.

Formats as Label Studio documents them (labelstud.io/guide/tasks#Basic-Label-Studio-JSON-format,
/guide/predictions, /guide/task_format): a task is `{"data": {...}, "predictions": [{"model_version", "score",
"result": [{"id", "from_name", "to_name", "type": "choices", "value": {"choices": [...]}}]}]}`, and the JSON
export adds `annotations`, each with `result`, `was_cancelled` and timestamps. Images travel as PNG data URIs,
feature rows as text. The control is named `label`, the object `image` or `text` (see `label_config`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal
from xml.sax.saxutils import quoteattr

import numpy as np

from components.errors import LnlError
from components.review.thumbnails import feature_text, png_data_uri

CONTROL = "label"
KEYS = ("source_row", "file")
Kind = Literal["image", "text"]


def sample_kind(samples: np.ndarray) -> Kind:
    """"image" for images (n, C, H, W) with C = 1 or 3, "text" for feature rows (n, d)."""
    if samples.ndim == 4 and samples.shape[1] in (1, 3):
        return "image"
    if samples.ndim == 2:
        return "text"
    raise ValueError(f"samples must be images (n, C, H, W) with C = 1 or 3, or features (n, d), got {samples.shape}")


def export_tasks(report_rows: list[dict], samples: np.ndarray, *, classes: Sequence[str],
                 model_version: str) -> list[dict]:
    """One Label Studio task per label-issue report row (`samples[i]` is row i's sample), pre-annotated with the
    model's predicted class; the prediction's `score` is p_label_wrong, the report's ranking. `data` also carries
    source_row, file, given_class, dataset_row and p_label_wrong, so that the reviewed labels can be matched back."""
    samples = np.asarray(samples)
    kind = sample_kind(samples)
    if len(report_rows) != len(samples):
        raise ValueError(f"{len(report_rows)} report rows but {len(samples)} samples; they must match one to one")
    known = set(classes)
    tasks = []
    for i, (row, sample) in enumerate(zip(report_rows, samples)):
        for key in ("given_class", "predicted_class"):
            if row[key] not in known:
                raise ValueError(f"report row {i}: {key} {row[key]!r} is not one of the classes")
        shown = png_data_uri(sample) if kind == "image" else feature_text(sample)
        p_wrong = round(float(row["p_label_wrong"]), 6)
        data = {kind: shown, "source_row": int(row["source_row"]), "file": str(row.get("file") or ""),
                "given_class": str(row["given_class"]), "dataset_row": int(row["dataset_row"]),
                "p_label_wrong": p_wrong}
        result = {"id": f"lnlflow-{i}", "from_name": CONTROL, "to_name": kind, "type": "choices",
                  "value": {"choices": [str(row["predicted_class"])]}}
        tasks.append({"data": data, "predictions": [{"model_version": model_version, "score": p_wrong,
                                                      "result": [result]}]})
    return tasks


def label_config(classes: Sequence[str], *, kind: Kind) -> str:
    """The labeling configuration XML: the sample, a header with its given class, one single choice per class."""
    if kind not in ("image", "text"):
        raise ValueError(f"kind must be 'image' or 'text', got {kind!r}")
    shown = ('  <Image name="image" value="$image" zoom="true"/>' if kind == "image"
             else '  <Text name="text" value="$text"/>')
    choices = "\n".join(f"    <Choice value={quoteattr(str(c))}/>" for c in classes)
    return (f'<View>\n  <Header value="Given label: $given_class"/>\n{shown}\n'
            f'  <Choices name="{CONTROL}" toName="{kind}" choice="single" showInLine="true" required="true">\n'
            f"{choices}\n  </Choices>\n</View>\n")


def _where(index: int, task: Any) -> str:
    ident = task.get("id") if isinstance(task, dict) else None
    return f"Label Studio export task {index}" + (f" (id {ident})" if ident is not None else "")


def _timestamp(annotation: dict) -> str:
    return str(annotation.get("updated_at") or annotation.get("created_at") or "")


def chosen_class(task: dict, index: int = 0) -> str | None:
    """The class chosen in the task's latest non-cancelled annotation with a choice on the `label` control, or
    None when there is none (no annotation, all skipped, nothing chosen). A malformed task is an LnlError."""
    where = _where(index, task)
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise LnlError(f"{where}: not a task of Label Studio's JSON export (no data object); export as JSON")
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise LnlError(f"{where}: annotations must be a list of objects")
    picks = []
    for order, annotation in enumerate(annotations):
        if annotation.get("was_cancelled"):
            continue
        result = annotation.get("result") or []
        if not isinstance(result, list):
            raise LnlError(f"{where}: an annotation's result must be a list")
        for item in result:
            value = item.get("value") if isinstance(item, dict) else None
            if not (isinstance(value, dict) and item.get("from_name") == CONTROL and item.get("type") == "choices"):
                continue
            choices = value.get("choices")
            if not isinstance(choices, list) or len(choices) > 1:
                raise LnlError(f"{where}: expected one chosen class, got {choices!r}")
            if choices:
                picks.append((_timestamp(annotation), order, str(choices[0])))
    return max(picks)[2] if picks else None


def _key_value(task: dict, where: str, key: str | None) -> tuple[str, str]:
    data = task["data"]
    file, row = str(data.get("file") or ""), data.get("source_row")
    key = key or ("file" if file else "source_row")
    if key == "file":
        if not file:
            raise LnlError(f"{where}: its data has no file to name the sample by")
        return key, file
    if isinstance(row, bool) or not (isinstance(row, int) or (isinstance(row, str) and row.strip().isdigit())):
        raise LnlError(f"{where}: its data has no source_row (got {row!r}); "
                       "was it exported by `lnlflow review export`?")
    return key, str(int(row))


def corrections_from_export(export: Any, *, classes: Sequence[str],
                            key: Literal["source_row", "file"] | None = None) -> list[dict]:
    """Correction rows `{key: …, "label": class or "" (= the given class, kept), "trusted": "1", "given_class"}`
    from a Label Studio JSON export, one per task with a usable annotation (see `chosen_class`; the others are
    skipped). `given_class` is the label the reviewer was shown (for `merge_corrections`; not a CSV column).

    `key` names samples by source_row or file (default: file where the task has one). A class outside
    `classes`, a task that does not name its sample, two tasks naming one sample with different classes, or a
    malformed export is one LnlError naming the task.
    """
    if not isinstance(export, list):
        raise LnlError(f"not a Label Studio JSON export (a list of tasks), got a JSON {type(export).__name__}")
    known = set(classes)
    rows: list[dict] = []
    seen: dict[tuple[str, str], tuple[int, str]] = {}
    for index, task in enumerate(export):
        where = _where(index, task)
        choice = chosen_class(task, index)
        if choice is None:
            continue
        if choice not in known:
            shown = ", ".join(list(classes)[:10]) + (", …" if len(classes) > 10 else "")
            raise LnlError(f"{where}: chosen class {choice!r} is not a class of this dataset ({shown})")
        given = task["data"].get("given_class")
        if given is None:
            raise LnlError(f"{where}: its data has no given_class; was it exported by `lnlflow review export`?")
        name = _key_value(task, where, key)
        label = "" if choice == str(given) else choice
        if name in seen:
            if seen[name][1] != label:
                raise LnlError(f"{where} and task {seen[name][0]} both name {name[0]} {name[1]!r} with different "
                               "classes; keep one of them in Label Studio and export again")
            continue
        seen[name] = (index, label)
        rows.append({name[0]: name[1], "label": label, "trusted": "1", "given_class": str(given)})
    return rows


def row_key(rows: list[dict], what: str) -> str | None:
    """The key ("source_row" or "file") all `rows` name samples by (None without rows); mixing is an LnlError."""
    keys = {k for row in rows for k in KEYS if k in row}
    if len(keys) > 1 or any(sum(k in row for k in KEYS) != 1 for row in rows):
        raise LnlError(f"{what}: every row must name its sample by exactly one of source_row or file")
    return keys.pop() if keys else None


def merge_corrections(existing: list[dict], new: list[dict]) -> list[dict]:
    """`existing` with the rows of `new` in place of those naming the same sample, then the other new rows, in
    order; rows come out as {key, "label", "trusted"}. Both lists must name samples the same way (source_row or
    file). A new row that keeps the label (label "") keeps an existing row's corrected label L when the reviewer
    was shown L (its `given_class` is L, or unknown): the report shows the corrected label, and "" in the CSV
    means the source's label."""
    old_key, new_key = row_key(existing, "the existing corrections"), row_key(new, "the imported corrections")
    if old_key and new_key and old_key != new_key:
        raise LnlError(f"the existing corrections name samples by {old_key}, the imported ones by {new_key}; "
                       f"import with key {old_key} or start a new corrections file")
    key = old_key or new_key
    if key is None:
        return []
    fresh = {str(row[key]).strip(): row for row in new}
    merged, done = [], set()
    for row in existing:
        name = str(row[key]).strip()
        update = fresh.get(name)
        if update is None:
            merged.append({key: name, "label": str(row.get("label") or "").strip(),
                           "trusted": str(row.get("trusted") or "").strip()})
            continue
        label, earlier = str(update.get("label") or ""), str(row.get("label") or "").strip()
        if not label and update.get("given_class", earlier) == earlier:
            label = earlier
        merged.append({key: name, "label": label, "trusted": str(update.get("trusted") or "")})
        done.add(name)
    merged += [{key: name, "label": str(row.get("label") or ""), "trusted": str(row.get("trusted") or "")}
               for name, row in fresh.items() if name not in done]
    return merged
