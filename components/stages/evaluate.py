"""DVC stage `evaluate`: accuracy three ways (never mixed), noise detection, label-issue report, plots."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from components import paths
from components.paths import Stage2Outputs
from components.config import load_params
from components.evaluation.health import label_health
from components.evaluation.metrics import confusion_matrix, detection_metrics, per_class_accuracy
from components.evaluation.plots import plot_confusion, plot_learning_curves, plot_score_histogram
from components.data.rows import read_rows
from components.evaluation.report import write_label_issues
from components.review.page import write_review_page
from components.io import atomic_dir, check_writable, read_json, read_tsv, write_json
from components.methods.mixtures import ClassWiseBetaMixture
from components.models import load_model_checkpoint
from components.stages.common import load_prepared, read_npz, run_stage
from components.training.loop import predict_logits
from components.training.streamed import StreamedRows
from components.models.classifier import PIXEL_MAX


SELECTION_NOTES = {  # how stage two chose the selected model (stage2.json selection_rule)
    "validation": "checkpoint with the best validation accuracy",
    "labelfree": "no validation split: the checkpoint with the lowest pool CLID (stage2.selection, no labels)",
    "last": "no validation split and label-free selection off: the last epoch",
}


def stage_one_scores(wrong_events: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """p(label wrong) from stage one alone: class-wise Beta mixture posterior of the noisy component."""
    mixture = ClassWiseBetaMixture(n_classes).fit(wrong_events, labels, iters=20)
    return mixture.predict(wrong_events, labels)[1]


def correction_counts(noise: dict, labels: dict, tr: np.ndarray, *, threshold: float, p_wrong: np.ndarray) -> dict:
    """What this review round used (data.corrections) and what is left to review: numbers MLflow logs per run."""
    used = noise.get("corrections") or {}
    return {
        "corrections_rows": used.get("rows", 0),
        "labels_corrected": int(labels["corrected"].sum()),
        "verified_rows": int(labels["verified"].sum()),
        "verified_train_rows": int(labels["verified"][tr].sum()),  # they also join the trusted (validation) set
        "flagged_labels": int((p_wrong > threshold).sum()),  # unverified training labels above the threshold
        "noise_rate_after_corrections": used.get("realised_rate_after", noise["realised_rate"]),
    }


def evaluate_run(outputs: Stage2Outputs, *, threshold: float) -> dict:
    """Every metric of one stage-two run (see metrics/eval.json), plus what the report and plots need."""
    # noise_known: injected noise is known everywhere; real noise only where the source gives a clean label
    # (CIFAR-N: all; Clothing1M/Food-101N: a verified subset; ANIMAL-10N, mini-WebVision: none)
    arrays = load_prepared()
    labels = read_npz(paths.NOISY_NPZ, ("y_noisy", "noisy_mask", "noise_known", "verified", "corrected"))
    y_noisy = labels["y_noisy"]
    info, noise = read_json(paths.DATA_MANIFEST), read_json(paths.NOISE_MANIFEST)
    log2, stage2 = read_tsv(outputs.log), read_json(outputs.metrics)
    n_classes, classes = info["n_classes"], info["classes"]
    store, y = arrays["X"], arrays["y"]
    tr, va, te = arrays["train_idx"], arrays["val_idx"], arrays["test_idx"]

    def X(idx: np.ndarray) -> StreamedRows:  # read in chunks as predictions go: evaluation never holds all of X
        scale = PIXEL_MAX if store.dtype == np.uint8 and store.ndim != 4 else None  # as training reads them
        return StreamedRows(store, idx, torch.device("cpu"), scale=scale)

    last, _ = load_model_checkpoint(outputs.model_last, checked=True)
    selected, selected_ckpt = load_model_checkpoint(outputs.model_selected, checked=True)
    def acc(model, idx: np.ndarray) -> float | None:  # None on an empty split (data.val_fraction 0)
        return float((predict_logits(model, X(idx)).argmax(1).numpy() == y[idx]).mean()) if len(idx) else None

    rule = stage2.get("selection_rule", "validation")
    test_pred = predict_logits(selected, X(te)).argmax(1).numpy()
    oracle = max(log2, key=lambda r: r["test_acc"])

    is_noisy, known = labels["noisy_mask"][tr].astype(bool), labels["noise_known"][tr].astype(bool)
    verified = labels["verified"][tr]
    wrong = read_npz(paths.DYNAMICS, ("wrong_events",))["wrong_events"].astype(np.int64)
    p_stage1 = np.where(verified, 0.0, stage_one_scores(wrong, y_noisy[tr], n_classes))  # a person's word is final
    det1 = detection_metrics(is_noisy, p_stage1, threshold=threshold, known=known)
    p_wrong, det2 = p_stage1, None
    if outputs.scores.is_file():
        p_wrong = np.where(verified, 0.0, read_npz(outputs.scores, ("p_label_wrong",))["p_label_wrong"])
        det2 = detection_metrics(is_noisy, p_wrong, threshold=threshold, known=known)
    labelfree = {}
    if outputs.labelfree.is_file():
        kept = read_npz(outputs.labelfree, ("epochs", "ensemble_test_logits"))
        single, _ = load_model_checkpoint(outputs.model_labelfree, checked=True)
        labelfree = {
            "test_acc_labelfree_ensemble": float((kept["ensemble_test_logits"].argmax(1) == y[te]).mean()),
            "test_acc_labelfree_single": acc(single, te),
            "labelfree_epochs": kept["epochs"].tolist(),
        }
    # How bad are the labels: confident learning on the selected model's training-set probabilities (it fits the
    # clean pattern, not the noise: within a point of the truth for robust methods; README: How bad are my labels?)
    probs_train = torch.softmax(predict_logits(selected, X(tr)), 1).numpy()
    health = label_health(probs_train, y_noisy[tr], classes, verified=verified)
    metrics = {
        "method": stage2["method"],
        "test_acc_last": acc(last, te),
        "test_acc_last10_mean": float(np.mean([r["test_acc"] for r in log2[-10:]])),
        "test_acc_selected": float((test_pred == y[te]).mean()),
        "test_acc_oracle": oracle["test_acc"],
        "oracle_epoch": int(oracle["epoch"]),
        "selected_epoch": int(selected_ckpt["meta"]["epoch"]),
        "selection_rule": rule,
        **labelfree,
        "val_acc_clean_last": acc(last, va),
        "val_acc_clean_selected": acc(selected, va),
        "noise_auc": det1["auc"],
        "noise_precision": det1["precision"],
        "noise_recall": det1["recall"],
        "noise_auc_stage2": det2["auc"] if det2 else None,
        "actual_noise_rate": noise["realised_rate"],
        "estimated_noise_rate": health["estimated_noise_rate"],  # from the model's scores alone, never the noise
        "requested_noise_rate": noise["requested_rate"],
        "noise_kind": noise["kind"],
        **correction_counts(noise, labels, tr, threshold=threshold, p_wrong=p_wrong),
        "per_class_acc": dict(zip(classes, np.round(per_class_accuracy(y[te], test_pred, n_classes), 6).tolist())),
        "label_health": health,
        "notes": {
            "test_acc_selected": SELECTION_NOTES[rule] + " (the headline number)",
            "test_acc_labelfree_ensemble": "sum of test logits of the k lowest-CLID epochs (no labels used to select)",
            "test_acc_oracle": "best test accuracy over stage-two epochs: chosen on the test set, optimistic, never a headline",
            "label_health": "confident learning (Northcutt et al., JAIR 2021) on the selected model's training-set "
                            "probabilities; interval: 95 % bootstrap over training rows; verified rows count as right",
        },
    }
    extras = {"tr": tr, "given": y_noisy[tr], "verified": verified, "probs_train": probs_train, "p_wrong": p_wrong, "is_noisy": is_noisy, "known": known,
              "classes": classes, "noise": noise, "wrong": wrong, "det1": det1, "log2": log2,
              "confusion": confusion_matrix(y[te], test_pred, n_classes)}
    return {"metrics": metrics, "extras": extras, "X": arrays["X"]}


def review_page(path: Path, metrics: dict, ex: dict, X: np.ndarray, order: np.ndarray, report: dict, *,
                top: int, threshold: float) -> None:
    """reports/label_issues.html: the `top` most probably wrong unverified labels with their images or features,
    then (up to `top` of) the rows a person verified, marked, so a review round shows what it fixed."""
    classes, given, verified, p = ex["classes"], ex["given"], ex["verified"], ex["p_wrong"]
    checked = [i for i in order if verified[i]][:top]
    shown = [i for i in order if not verified[i]][:top] + checked
    known = ex["noise"]["kind"] != "none"
    rows = [{"source_row": int(report["source_row"][i]), "file": report["file"][i] if report["file"] else "",
             "given_class": classes[given[i]], "predicted_class": classes[report["predicted"][i]],
             "p_label_wrong": float(p[i]), "model_p_given_label": float(report["p_given"][i]),
             "verified": int(verified[i]),
             "known_noisy": (int(ex["is_noisy"][i]) if ex["known"][i] else None) if known else None}
            for i in shown]
    flagged = (p > threshold) & ~verified
    picked = np.bincount(given[shown], minlength=len(classes)) if shown else np.zeros(len(classes), int)
    counts = {name: {"train": int((given == c).sum()), "flagged": int(flagged[given == c].sum()),
                     "shown": int(picked[c])} for c, name in enumerate(classes)}
    n_verified = int(verified.sum())
    listed = "" if not n_verified else (" (listed last, marked verified)" if len(checked) == n_verified
                                        else f" (the first {len(checked)} listed last, marked verified)")
    note = (f"{metrics['method']}: {int(flagged.sum())} of {len(given)} training labels flagged (p > {threshold:g}); "
            f"{n_verified} verified by a person{listed}. Predictions from the model selected by "
            f"{metrics['selection_rule']} (epoch {metrics['selected_epoch']}). Fix labels with lnlflow review serve, "
            "data.corrections or lnlflow review export.")
    write_review_page(path, rows=rows, samples=X.take(ex["tr"][np.asarray(shown, dtype=np.int64)]), classes=classes,
                      class_counts=counts, title="lnlflow — labels most probably wrong", note=note,
                      health=metrics.get("label_health"))


def write_report_and_plots(metrics: dict, ex: dict, X: np.ndarray, *, top: int, threshold: float) -> None:
    """The label-issue report (CSV and HTML page) and the PNG plots of the pipeline run."""
    table = read_rows(paths.ROWS_CSV)
    tr = ex["tr"]
    report = {"source_row": table.source_row[tr], "file": [table.file[i] for i in tr] if table.has_files else None,
              "predicted": ex["probs_train"].argmax(1), "p_given": ex["probs_train"][np.arange(len(tr)), ex["given"]]}
    with atomic_dir(paths.REPORTS) as reports, atomic_dir(paths.PLOTS) as plot_dir:
        order = write_label_issues(
            reports / paths.LABEL_ISSUES.name, source_row=report["source_row"], file=report["file"], dataset_row=tr,
            given=ex["given"], predicted=report["predicted"], p_label_wrong=ex["p_wrong"],
            p_given_model=report["p_given"], classes=ex["classes"], selected_by=metrics["selection_rule"],
            verified=ex["verified"],
            known_noisy=np.where(ex["known"], ex["is_noisy"], -1) if ex["noise"]["kind"] != "none" else None,
        )
        review_page(reports / paths.REVIEW_PAGE.name, metrics, ex, X, order, report, top=top, threshold=threshold)
        plot_confusion(ex["confusion"], ex["classes"], plot_dir / "confusion_matrix.png",
                       title=f"test confusion — {metrics['method']}, selected epoch {metrics['selected_epoch']}")
        auc = ex["det1"]["auc"]
        plot_score_histogram(ex["wrong"][ex["known"]].astype(float), ex["is_noisy"][ex["known"]], plot_dir / "stage1_wrong_events.png",
                             xlabel="stage-one wrong events", title=f"noise scores (AUC {auc if auc is not None else float('nan'):.3f})")
        plot_learning_curves(read_tsv(paths.STAGE1_LOG), ex["log2"], plot_dir / "learning_curves.png", method=metrics["method"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lnlflow evaluate", description="Evaluate a stage-two run.")
    parser.add_argument("--run", type=Path, help="a comparison run folder: write only its eval.json")
    args = parser.parse_args(argv)
    params = load_params()
    outputs = Stage2Outputs.inside(args.run) if args.run else Stage2Outputs()
    check_writable(files=[outputs.eval], folders=[] if args.run else [paths.REPORTS, paths.PLOTS])
    result = evaluate_run(outputs, threshold=params.evaluate.threshold)
    metrics = result["metrics"]
    if not args.run:
        write_report_and_plots(metrics, result["extras"], result["X"], top=params.evaluate.review_top,
                               threshold=params.evaluate.threshold)
    write_json(outputs.eval, metrics)
    auc = metrics["noise_auc"]
    print(
        f"evaluate: test acc last {metrics['test_acc_last']:.4f} | selected {metrics['test_acc_selected']:.4f} "
        f"| oracle {metrics['test_acc_oracle']:.4f} (test-selected) | noise AUC {auc if auc is not None else float('nan'):.4f}"
    )


if __name__ == "__main__":
    raise SystemExit(run_stage("evaluate", main))
