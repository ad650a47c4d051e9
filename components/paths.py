"""Where each stage reads and writes, relative to the project root (mirrors dvc.yaml)."""

from pathlib import Path

PREPARED = Path("data/prepared")
NOISY = Path("data/noisy")
STAGE1 = Path("outputs/stage1")
STAGE2 = Path("outputs/stage2")
METRICS = Path("metrics")
REPORTS = Path("reports")
PLOTS = Path("plots")

DATASET_NPZ = PREPARED / "dataset.npz"
DATA_MANIFEST = PREPARED / "manifest.json"
NOISY_NPZ = NOISY / "labels.npz"
NOISE_MANIFEST = NOISY / "manifest.json"
BASE_MODEL = STAGE1 / "base_model.pt"
DYNAMICS = STAGE1 / "dynamics.npz"
MODEL_LAST = STAGE2 / "model_last.pt"
MODEL_SELECTED = STAGE2 / "model_selected.pt"
STAGE2_SCORES = STAGE2 / "scores.npz"
MODEL_LABELFREE = STAGE2 / "model_labelfree.pt"
LABELFREE = STAGE2 / "labelfree.npz"
STAGE1_LOG = METRICS / "stage1_log.tsv"
STAGE2_LOG = METRICS / "stage2_log.tsv"
STAGE1_METRICS = METRICS / "stage1.json"
STAGE2_METRICS = METRICS / "stage2.json"
EVAL_METRICS = METRICS / "eval.json"
LABEL_ISSUES = REPORTS / "label_issues.csv"

