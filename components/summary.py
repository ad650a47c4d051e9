"""`lnlflow summary`: what the last pipeline run found, and where to look next."""

from __future__ import annotations

from pathlib import Path

from components import paths
from components.io import read_json


SELECTED_BY = {  # eval.json selection_rule → how the summary names it
    "validation": "checkpoint selected on validation",
    "labelfree": "no validation split: checkpoint selected by lowest CLID, label-free",
    "last": "no validation split: last epoch",
}


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def health_lines(health: dict | None) -> list[str]:
    """eval.json's label_health in words: the estimate, its interval and the most common confusions."""
    if not health:
        return []
    low, high = health["estimated_noise_rate_interval"]
    pairs = ", ".join(f"{p['given']} → {p['true']} ({pct(p['share'])})" for p in health["top_confusions"][:3])
    return [f"  label health          {pct(health['estimated_noise_rate'])} of the labels estimated wrong "
            f"(95 % interval {pct(low)} – {pct(high)}; from the model's scores alone)",
            f"                        given → true, share of the given class: {pairs or 'none'}"]


def render(root: Path) -> str:
    """The summary text for the pipeline outputs under `root`."""
    ev = read_json(root / paths.EVAL_METRICS)
    noise = read_json(root / paths.NOISE_MANIFEST)
    auc = "n/a (no noisy labels)" if ev["noise_auc"] is None else f"{ev['noise_auc']:.4f}"
    return "\n".join([
        f"lnlflow — {ev['method']} on {noise['dataset']} with {noise['kind']} noise",
        f"  noise rate            requested {pct(noise['requested_rate'])}, actual {pct(ev['actual_noise_rate'])}",
        f"  test accuracy         {pct(ev['test_acc_selected'])}  ({SELECTED_BY[ev.get('selection_rule', 'validation')]}, epoch {ev['selected_epoch']})",
        f"                        last epoch {pct(ev['test_acc_last'])}; label-free (lowest-CLID ensemble) {pct(ev.get('test_acc_labelfree_ensemble'))}",
        f"                        oracle best-on-test {pct(ev['test_acc_oracle'])} (optimistic, not a result)",
        f"  noise-detection AUC   {auc}  (precision {pct(ev['noise_precision'])}, recall {pct(ev['noise_recall'])})",
        *health_lines(ev.get("label_health")),
        f"  label-issue report    {paths.LABEL_ISSUES}  (most probably wrong first; {ev.get('flagged_labels', 0)} flagged)",
        f"                        {paths.REVIEW_PAGE}  (with images; fix labels: data.corrections, lnlflow review)",
        f"  plots                 {paths.PLOTS}/",
        "",
        "  MLflow UI:   make mlflow-ui, then http://127.0.0.1:5000/#/experiments?workflowType=machine_learning",
        "  Prefect UI:  make prefect-server, then make deploy (scheduled runs; http://127.0.0.1:4200)",
    ])


def main() -> None:
    print(render(Path.cwd()))
