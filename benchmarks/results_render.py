"""Results tables: JSON (written by results.py) → markdown, and the README's generated block(s).

A table's JSON: {"table", "title", "commit", "dirty", "command", "started", "machine": {"cpu", "cores",
"torch_threads", "device"}, "varies", "size", "rows": [{"setting", "method", "seed", "noise_seed", "stage1_seed",
"stage2_seed", "actual_noise_rate", "test_acc_selected", "test_acc_last", "noise_auc", "cpu_s_per_epoch",
"wall_s_per_epoch", "repeat", …}]}. The markdown is a pure function of it (`render`), so a test can tell a
hand-edited table from a generated one.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)


def _mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    mean = 100 * statistics.fmean(values)
    return f"{mean:.2f} ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def _ordered(rows: list[dict], key: str) -> list[str]:
    return list(dict.fromkeys(r[key] for r in rows))


def facts(doc: dict) -> str:
    m = doc["machine"]
    dirty = " (uncommitted changes)" if doc["dirty"] else ""
    return (f"Commit `{doc['commit'][:10]}`{dirty}, {doc['started'][:10]}, `{doc['command']}` on {m['cores']} × "
            f"{m['cpu']} ({m['device']}, torch threads {m['torch_threads']}). Varied: "
            f"{'; '.join(doc['varies'])}.")


def pivot(rows: list[dict], value) -> list[str]:
    settings = _ordered(rows, "setting")
    lines = ["| run | " + " | ".join(settings) + " |", "|---|" + "---:|" * len(settings)]
    for name in _ordered(rows, "method"):
        cells = [value([r for r in rows if r["method"] == name and r["setting"] == s]) for s in settings]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def render_accuracy(doc: dict) -> list[str]:
    rows = doc["rows"]
    seeds = _ordered(rows, "seed")
    epochs = sorted({r["stage2_epochs"] for r in rows})
    auc = lambda rs: f"{statistics.fmean(r['noise_auc'] for r in rs):.4f}" if rs else "—"  # noqa: E731
    noise = [f"{s} " + " / ".join(f"{100 * r['actual_noise_rate']:.2f}" for r in rows
                                  if r["setting"] == s and r["method"] == rows[0]["method"])
             for s in _ordered(rows, "setting")]
    return [
        f"Digits, stage two {', '.join(map(str, epochs))} epochs, seeds {', '.join(map(str, seeds))}; test accuracy "
        "(%) as mean ± std over seeds.", "",
        "Validation-selected checkpoint:", "", *pivot(rows, lambda rs: _mean_std([r["test_acc_selected"] for r in rs])),
        "", "Last epoch:", "", *pivot(rows, lambda rs: _mean_std([r["test_acc_last"] for r in rs])),
        "", "Noise-detection AUC (mean; stage two's scores where the method has them, else stage one's):", "",
        *pivot(rows, auc), "",
        f"Actual noise rate per seed (%): {'; '.join(noise)}.",
    ]


def render_cost(doc: dict) -> list[str]:
    rows = doc["rows"]
    repeats = _ordered(rows, "repeat")
    head = "| method | " + " | ".join(f"CPU s/epoch ({r}) | × CE ({r})" for r in repeats)
    lines = [
        f"Digits sym-40, seed 0, stage two {rows[0]['stage2_epochs']} epochs per run (median of epochs 2..; batch "
        "loop plus the method's per-epoch work, evaluation excluded). Each repeat runs every method in turn, order "
        "rotated; × CE is taken within the repeat.", "",
        head + " | ratios differ | wall × CE |",
        "|---|" + "---:|---:|" * len(repeats) + "---:|---|",
    ]
    for name in _ordered(rows, "method"):
        mine = sorted((r for r in rows if r["method"] == name), key=lambda r: r["repeat"])
        ratios = [r["cpu_ratio_to_ce"] for r in mine]
        spread = (max(ratios) - min(ratios)) / statistics.fmean(ratios)
        cells = " | ".join(f"{r['cpu_s_per_epoch']:.3f} | {r['cpu_ratio_to_ce']:.2f}" for r in mine)
        wall = ", ".join(f"{r['wall_ratio_to_ce']:.2f}" for r in mine)
        lines.append(f"| {name} | {cells} | {100 * spread:.1f} % | {wall} |")
    return lines


def render(doc: dict) -> str:
    body = render_cost(doc) if doc["table"] == "cost" else render_accuracy(doc)
    return "\n".join([f"**{doc['title']}** (`{doc['table']}`). {facts(doc)}", "", *body]) + "\n"


def readme_blocks(text: str) -> dict[str, str]:
    """The generated blocks of a README: table name → body between its markers."""
    return {m["name"]: m["body"] for m in BLOCK.finditer(text)}


def update_readme(readme: Path, results_dir: Path) -> list[str]:
    """Replace every block's body with its results file; returns what changed."""
    text = readme.read_text()
    changed = []

    def fill(match: re.Match) -> str:
        body = (results_dir / f"{match['name']}.md").read_text()
        if body != match["body"]:
            changed.append(f"README.md: results:{match['name']} updated")
        return match.group(1) + body + match.group(4)

    new = BLOCK.sub(fill, text)
    if new != text:
        readme.write_text(new)
    return changed
