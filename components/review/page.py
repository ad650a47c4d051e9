"""One self-contained HTML page to review the flagged labels: per-class counts, filters and a card per sample.

Nothing in the page points outside it (inline CSS and JS, images as PNG data URIs, a CSP that forbids any load),
so it can be mailed, archived as an artifact or opened offline. Every user-provided string is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from components.io import write_text
from components.review.health import CSS as HEALTH_CSS, health_html
from components.review.thumbnails import feature_text, png_data_uri

THUMB = 96  # displayed thumbnail side in CSS pixels; images are enlarged to at least this by whole factors
_REQUIRED = ("source_row", "file", "given_class", "predicted_class", "p_label_wrong", "model_p_given_label", "verified")

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .3em}.note{color:#555;margin:0 0 1em}
.counts{max-height:24em;overflow:auto;display:inline-block;margin:0 0 1em}
table{border-collapse:collapse;background:#fff}th,td{border:1px solid #ddd;padding:1px 10px;text-align:right}
th{position:sticky;top:0;background:#f0f0f0}
th:first-child,td:first-child{text-align:left}.filters{position:sticky;top:0;z-index:1;background:#fafafa;padding:.5em 0;margin:0 0 .5em;display:flex;gap:1.2em;flex-wrap:wrap;align-items:center}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:10px}
.card{display:flex;gap:10px;background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;min-width:0}
.card img{width:96px;height:96px;object-fit:contain;image-rendering:pixelated;flex:none;background:#000}
.feat{width:96px;flex:none;font:11px/1.3 monospace;color:#444;overflow-wrap:anywhere}
.info{min-width:0;overflow-wrap:anywhere}.cls{font-weight:600}.p{font-size:1.25em;font-weight:700;color:#b3261e}
.meta{color:#666;font-size:12px}.badge{display:inline-block;font-size:11px;border-radius:3px;padding:0 5px;margin-right:3px}
.verified{background:#d7f0dc;color:#1b5e20}.noisy{background:#fde2e0;color:#b3261e}.clean{background:#e3ecfb;color:#1a3f8b}
[hidden]{display:none!important}
"""

_JS = """
const $ = id => document.getElementById(id);
function applyFilters() {
  const g = $('f-given').value, p = $('f-pred').value, hv = $('f-verified').checked, ov = $('f-only-verified').checked;
  let shown = 0;
  for (const c of document.querySelectorAll('.card')) {
    const v = c.dataset.verified === '1';
    const show = (!g || c.dataset.given === g) && (!p || c.dataset.predicted === p) && !(hv && v) && !(ov && !v);
    c.hidden = !show; shown += show;
  }
  $('n-shown').textContent = shown;
}
for (const id of ['f-given', 'f-pred', 'f-verified', 'f-only-verified']) $(id).addEventListener('change', applyFilters);
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  document.body.dataset.images = imgs.filter(i => i.complete && i.naturalWidth > 0).length + '/' + imgs.length;
});
"""


def _check(rows: list[dict], samples: np.ndarray, classes: Sequence[str]) -> None:
    if len(rows) != len(samples):
        raise ValueError(f"review page: {len(rows)} rows but {len(samples)} samples; they must match one to one")
    is_image = samples.ndim == 4 and samples.shape[1] in (1, 3)
    if not (is_image or samples.ndim == 2):
        raise ValueError(f"review page: samples must be images (n, C, H, W) with C = 1 or 3, or features (n, d), "
                         f"got shape {samples.shape}")
    known = set(classes)
    for i, row in enumerate(rows):
        missing = [key for key in _REQUIRED if key not in row]
        if missing:
            raise ValueError(f"review page: row {i} lacks {', '.join(missing)}")
        for key in ("given_class", "predicted_class"):
            if row[key] not in known:
                raise ValueError(f"review page: row {i} has {key} {row[key]!r}, not one of the classes")


def _badges(row: dict) -> str:
    out = ['<span class="badge verified">verified</span>'] if row["verified"] else []
    known = row.get("known_noisy")
    if known is not None:
        out.append('<span class="badge noisy">known noisy</span>' if known else '<span class="badge clean">known clean</span>')
    return "".join(out)


def _card(rank: int, row: dict, sample: np.ndarray) -> str:
    e = html.escape
    given, predicted, file = e(str(row["given_class"])), e(str(row["predicted_class"])), e(str(row["file"] or ""))
    picture = (f'<img src="{png_data_uri(sample, min_side=THUMB)}" alt="row {int(row["source_row"])}">'
               if sample.ndim == 3 else f'<div class="feat">{e(feature_text(sample))}</div>')
    return (f'<div class="card" data-given="{given}" data-predicted="{predicted}" data-verified="{int(bool(row["verified"]))}">'
            f'{picture}<div class="info"><div class="cls">{given} → {predicted}</div>'
            f'<div><span class="p">{100 * float(row["p_label_wrong"]):.1f}%</span> label wrong</div>'
            f'<div class="meta">model p(given) {100 * float(row["model_p_given_label"]):.1f}%</div>'
            f'<div class="meta">#{rank} · row {int(row["source_row"])}</div>'
            + (f'<div class="meta" title="{file}">{file}</div>' if file else "")
            + f'<div>{_badges(row)}</div></div></div>')


def write_review_page(path: str | Path, *, rows: list[dict], samples: np.ndarray, classes: Sequence[str],
                      class_counts: dict[str, dict[str, int]], title: str, note: str = "",
                      health: dict | None = None) -> None:
    """Write one self-contained HTML review page of `rows` (most doubtful first, verified ones marked) with their
    `samples` (images (n, C, H, W) or feature rows (n, d), same order), per-class `class_counts` ({"train",
    "flagged", "shown"} per class name), filters by given/predicted class and to hide or show only verified rows,
    and eval.json's `label_health` summary on top when `health` is given (components/review/health.py). Atomic."""
    samples = np.asarray(samples)
    _check(rows, samples, classes)
    e = html.escape
    names = list(classes) + [c for c in class_counts if c not in set(classes)]
    counts = "".join(
        f"<tr><td>{e(str(c))}</td>" + "".join(f"<td>{int(class_counts.get(c, {}).get(k, 0))}</td>"
                                              for k in ("train", "flagged", "shown")) + "</tr>" for c in names)
    options = '<option value="">all</option>' + "".join(f'<option value="{e(str(c))}">{e(str(c))}</option>'
                                                       for c in classes)
    cards = "\n".join(_card(i + 1, row, sample) for i, (row, sample) in enumerate(zip(rows, samples)))
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{e(title)}</title><style>{_CSS}{HEALTH_CSS}</style></head>
<body><h1>{e(title)}</h1>{f'<p class="note">{e(note)}</p>' if note else ""}{health_html(health)}
<div class="counts"><table><thead><tr><th>class</th><th>train labels</th><th>flagged</th><th>shown</th></tr></thead><tbody>{counts}</tbody></table></div>
<div class="filters"><label>given <select id="f-given">{options}</select></label>
<label>predicted <select id="f-pred">{options}</select></label>
<label><input type="checkbox" id="f-verified"> hide verified</label>
<label><input type="checkbox" id="f-only-verified"> only verified</label>
<span><span id="n-shown">{len(rows)}</span> of {len(rows)} shown</span></div>
<div class="grid">
{cards}
</div>
<script>{_JS}</script></body></html>
"""
    write_text(path, text)
