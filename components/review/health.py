"""The "how bad are my labels?" summary on top of both review pages, from eval.json's `label_health` block:
`{"estimated_noise_rate", "estimated_noise_rate_interval": [lo, hi], "per_class": [{"class", "n",
"estimated_noise_rate"}], "top_confusions": [{"given", "true", "share"}]}`. An absent block, or one that does not
have that shape, renders as nothing: the pages never fail for it. Every string is escaped.
"""

from __future__ import annotations

import html
import math
from typing import Any

CSS = """
.health{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:0 0 1em;max-width:60em}
.health h2{font-size:1.1em;margin:0 0 .3em}.health .rate{font-size:1.5em;font-weight:700;color:#b3261e}
.health table{margin:.3em 0;border-collapse:collapse}.health td,.health th{padding:1px 10px;text-align:right}
.health td:first-child,.health th:first-child{text-align:left}.health td.rate-bar{min-width:8em;text-align:left}
.health .rate-bar span{display:inline-block;height:.7em;background:#e57373;vertical-align:middle}
.health ul{margin:.2em 0;padding-left:1.2em}
"""


def _rate(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if 0 <= value <= 1 else None


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _per_class(rows: Any) -> str:
    if not isinstance(rows, list):
        return ""
    cells = []
    for row in rows:
        rate = _rate(row.get("estimated_noise_rate")) if isinstance(row, dict) else None
        n = row.get("n") if isinstance(row, dict) else None
        if rate is None or "class" not in row or isinstance(n, bool) or not isinstance(n, int):
            return ""
        cells.append(f'<tr><td>{html.escape(str(row["class"]))}</td><td>{n}</td><td>{_pct(rate)}</td>'
                     f'<td class="rate-bar"><span style="width:{100 * rate:.1f}%"></span></td></tr>')
    if not cells:
        return ""
    return ('<details><summary>per class</summary><table><thead><tr><th>class</th><th>labels</th>'
            f'<th>estimated wrong</th><th></th></tr></thead><tbody>{"".join(cells)}</tbody></table></details>')


def _confusions(rows: Any) -> str:
    if not isinstance(rows, list):
        return ""
    items = []
    for row in rows:
        share = _rate(row.get("share")) if isinstance(row, dict) else None
        if share is None or "given" not in row or "true" not in row:
            return ""
        e = html.escape
        items.append(f'<li>given <b>{e(str(row["given"]))}</b>, truly <b>{e(str(row["true"]))}</b>: {_pct(share)}</li>')
    return f'<div>Most often confused:<ul class="confusions">{"".join(items)}</ul></div>' if items else ""


def health_html(block: Any) -> str:
    """The summary as an HTML fragment, or "" when `block` is absent or malformed."""
    if not isinstance(block, dict):
        return ""
    rate = _rate(block.get("estimated_noise_rate"))
    if rate is None:
        return ""
    interval = block.get("estimated_noise_rate_interval")
    bounds = [_rate(v) for v in interval] if isinstance(interval, list) and len(interval) == 2 else []
    shown = f" (interval {_pct(bounds[0])}–{_pct(bounds[1])})" if len(bounds) == 2 and None not in bounds else ""
    return (f'<section class="health" id="health"><h2>How bad are the labels?</h2>'
            f'<p><span class="rate">{_pct(rate)}</span> of the training labels are estimated wrong{shown}, '
            "from the model's scores alone.</p>"
            f"{_per_class(block.get('per_class'))}{_confusions(block.get('top_confusions'))}</section>")
