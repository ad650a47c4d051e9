"""Where each stage reads and writes, relative to the project root (mirrors dvc.yaml)."""

from dataclasses import dataclass
from pathlib import Path

# dvc.yaml's stages in order; `inputs` runs on every repro (fingerprints of the files params.yaml names)
STAGES = ("inputs", "data", "noise", "stage1", "stage2", "evaluate")

PREPARED = Path("data/prepared")
NOISY = Path("data/noisy")
STAGE1 = Path("outputs/stage1")
STAGE2 = Path("outputs/stage2")
METRICS = Path("metrics")
REPORTS = Path("reports")
PLOTS = Path("plots")

DATASET_NPZ = PREPARED / "dataset.npz"  # labels and split indices
STORE = PREPARED / "X"  # the inputs as .npy shards (components/data/store.py)
DATA_MANIFEST = PREPARED / "manifest.json"
ROWS_CSV = PREPARED / "rows.csv"  # per stored row: split, source row, file (components/data/rows.py)
NOISY_NPZ = NOISY / "labels.npz"
NOISE_MANIFEST = NOISY / "manifest.json"
BASE_MODEL = STAGE1 / "base_model.pt"
LAST_MODEL = STAGE1 / "last_model.pt"  # the weights after stage one's final epoch (a fixed-length warm-up's end)
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
REVIEW_PAGE = REPORTS / "label_issues.html"  # the same, most doubtful first, with images (components/review/page.py)

INPUTS = Path("data/inputs")  # stage `inputs`: fingerprints of the user's files named in params.yaml
DATA_INPUTS = INPUTS / "data.json"
NOISE_INPUTS = INPUTS / "noise.json"
MODEL_INPUTS = INPUTS / "model.json"
INPUT_DIGESTS = Path(".lnlflow/input_digests.sqlite")  # digest cache keyed on (path, size, mtime_ns, inode)

COMPARE = Path("outputs/compare")
COMPARISON_MD = Path("outputs/comparison.md")
COMPARISON_METRICS = METRICS / "comparison.json"


@dataclass(frozen=True)
class Stage2Outputs:
    """A stage-two run's files: the pipeline's (default) or one comparison run's, all inside one folder."""

    dir: Path = STAGE2
    log: Path = STAGE2_LOG
    metrics: Path = STAGE2_METRICS
    eval: Path = EVAL_METRICS

    @classmethod
    def inside(cls, folder: Path) -> "Stage2Outputs":
        folder = Path(folder)
        return cls(folder, folder / "log.tsv", folder / "stage2.json", folder / "eval.json")

    @property
    def model_last(self) -> Path:
        return self.dir / MODEL_LAST.name

    @property
    def model_selected(self) -> Path:
        return self.dir / MODEL_SELECTED.name

    @property
    def model_labelfree(self) -> Path:
        return self.dir / MODEL_LABELFREE.name

    @property
    def scores(self) -> Path:
        return self.dir / STAGE2_SCORES.name

    @property
    def labelfree(self) -> Path:
        return self.dir / LABELFREE.name
