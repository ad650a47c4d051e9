"""DVC stage `compare/dvc.yaml:table`: one markdown table over every comparison run (mean ± std over seeds)."""

from __future__ import annotations

import statistics

from components import paths
from components.config import load_params
from components.errors import LnlError
from components.io import check_writable, read_json, write_json, write_text
from components.stages.common import run_stage
from components.stages.compare_run import run_folder

COLUMNS = ("run", "settings", "actual noise", "selected (val)", "last", "label-free ens.", "oracle (test)",
           "noise AUC", "s / epoch", "× CE")


def _mean_std(values: list[float | None]) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _pct(stat: tuple[float, float] | None, *, std: bool = True) -> str:
    if stat is None:
        return "—"
    return f"{100 * stat[0]:.2f} ± {100 * stat[1]:.2f}" if std else f"{100 * stat[0]:.2f}"


def summarise(name: str, overrides: dict, seeds: list[int]) -> dict:
    """Per-run means and stds over seeds of every reported figure."""
    evals = [read_json(run_folder(name, s) / "eval.json") for s in seeds]
    stage2 = [read_json(run_folder(name, s) / "stage2.json") for s in seeds]
    pick = lambda key: _mean_std([e.get(key) for e in evals])  # noqa: E731
    auc2 = pick("noise_auc_stage2")
    return {
        "run": name,
        "method": overrides["method"],
        "settings": ", ".join(f"{k}={v}" for k, v in overrides.items() if k != "method") or "defaults",
        "actual_noise_rate": statistics.fmean(e["actual_noise_rate"] for e in evals),
        "test_acc_selected": pick("test_acc_selected"),
        "test_acc_last": pick("test_acc_last"),
        "test_acc_labelfree_ensemble": pick("test_acc_labelfree_ensemble"),
        "test_acc_oracle": pick("test_acc_oracle"),
        "noise_auc": auc2 if auc2 is not None else pick("noise_auc"),
        "noise_auc_source": "stage two" if auc2 is not None else "stage one",
        "train_seconds_per_epoch": statistics.fmean(s["train_seconds_per_epoch"] for s in stage2),
    }


def render(rows: list[dict], *, seeds: list[int]) -> str:
    """The markdown table; the CE row (the first run with method ce) is the cost baseline."""
    ce = next((r["train_seconds_per_epoch"] for r in rows if r["method"] == "ce"), None)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * 3 + "---:|" * (len(COLUMNS) - 3)]
    for r in rows:
        auc = "—" if r["noise_auc"] is None else f"{r['noise_auc'][0]:.4f} ({r['noise_auc_source']})"
        ratio = "—" if ce is None else f"{r['train_seconds_per_epoch'] / ce:.2f}"
        lines.append("| " + " | ".join([
            r["run"], r["settings"], f"{100 * r['actual_noise_rate']:.2f} %", _pct(r["test_acc_selected"]),
            _pct(r["test_acc_last"]), _pct(r["test_acc_labelfree_ensemble"]), _pct(r["test_acc_oracle"], std=False),
            auc, f"{r['train_seconds_per_epoch']:.3f}", ratio,
        ]) + " |")
    lines += ["", f"Test accuracy in %, mean ± std over seeds {seeds}. selected = checkpoint with the best validation "
              "accuracy; label-free ens. = sum of test logits of the k lowest-CLID epochs; oracle = best test accuracy "
              "over epochs (chosen on the test set: optimistic). s / epoch = training time of a stage-two epoch (batch "
              "loop + the method's per-epoch work, e.g. DivideMix's division; evaluation excluded), "
              "× CE = ratio to the CE run measured in the same comparison."]
    return "\n".join(lines) + "\n"


def main() -> None:
    cfg = load_params().compare
    if not cfg.runs:
        raise LnlError("params.yaml: compare.runs names no comparison runs (add a compare: section, see README)")
    check_writable(files=[paths.COMPARISON_MD, paths.COMPARISON_METRICS])
    rows = [summarise(name, overrides, cfg.seeds) for name, overrides in cfg.runs.items()]
    table = render(rows, seeds=cfg.seeds)
    write_text(paths.COMPARISON_MD, table)
    write_json(paths.COMPARISON_METRICS, {r["run"]: {k: v for k, v in r.items() if k != "run"} for r in rows})
    print(table)


if __name__ == "__main__":
    raise SystemExit(run_stage("compare", main))
