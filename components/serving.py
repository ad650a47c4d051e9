"""The registered model: an MLflow pyfunc that takes samples as the data source gives them and returns class names
with probabilities.

It reads the data manifest's `input` record (how raw source values map to the stored X): a batch is checked
(numbers, shape, recorded range, whole numbers where the source has pixel counts), put in the stored layout,
scaled by the recorded scale and classified. A bad batch is refused with one line naming what is wrong and what
is expected, never mispredicted. Imported only by tracking code and by the served model (it imports MLflow).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from components import paths
from components.errors import LnlError
from components.io import read_json

RESERVED = ("label", "probability")  # the output's first two columns; a class of that name gets a `class_` prefix
BATCH = 512


def _dims(shape: tuple[int, ...]) -> str:
    return "(N, " + ", ".join(str(s) for s in shape) + ")"


@dataclass(frozen=True)
class InputSpec:
    """What the served model accepts, from the manifest: `shape` is one sample in the stored (model) layout."""

    kind: str
    shape: tuple[int, ...]
    source_shape: tuple[int, ...]
    dtype: str
    low: float  # accepted raw values
    high: float
    scale: float  # model input = raw / scale
    integer: bool
    observed: tuple[float, float] | None = None  # float sources: the training data's range (widened into low/high)

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> InputSpec:
        record = manifest.get("input")
        if not record:
            raise LnlError("data manifest has no 'input' record (written by an older data stage): "
                           "run `dvc repro` first")
        low, high = (float(v) for v in record["range"])
        observed = None
        if not record["integer"]:  # user floats: allow half the training range's width either side
            observed, margin = (low, high), (high - low) / 2 or max(abs(high), 1.0)  # (a constant feature: ±|value|)
            low, high = low - margin, high + margin
        return cls(record["kind"], tuple(manifest["input_shape"]), tuple(record["shape"]), record["dtype"],
                   low, high, float(record["scale"]), bool(record["integer"]), observed)

    def like(self) -> str:
        """How the source gives its data, for messages."""
        if self.kind == "digits":
            return "load_digits().images"
        if self.integer:
            return f"the {self.kind} source's {self.dtype} pixels"
        low, high = self.observed
        return f"the {self.kind} source's X (training range [{low:g}, {high:g}] widened by half its width)"

    def shapes(self) -> str:
        """The accepted batch shapes, for messages and the model description."""
        if self.kind == "digits":
            flat = int(np.prod(self.shape))
            return f"{_dims(self.source_shape)} like load_digits().images or (N, {flat}) like load_digits().data"
        if len(self.shape) != 3:
            return _dims(self.shape)
        c, h, w = self.shape
        if c == 1:
            return f"{_dims((h, w))}, {_dims(self.shape)}, {_dims((h, w, c))} or (N, {h * w})"
        return f"{_dims(self.shape)} or {_dims((h, w, c))}"

    def describe(self, columns: list[str]) -> str:
        """The 'how to call' text stored with the model."""
        kind = "whole numbers" if self.integer else "numbers"
        shown = ", ".join(columns[2:6]) + (", …" if len(columns) > 6 else "")
        return (
            f"Input: raw samples as the {self.kind} source gives them ({self.dtype}), shape {self.shapes()}, "
            f"{kind} in [{self.low:g}, {self.high:g}]; the model divides them by {self.scale:g} itself. "
            'REST: POST /invocations with the JSON body {"inputs": [...]}, the batch as nested lists; '
            "Python: mlflow.pyfunc.load_model(uri).predict(array). "
            f"Output: one row per sample — label (class name), probability (of that label), then one probability "
            f"column per class ({shown}). Other shapes, values outside the range"
            f"{' or fractional values' if self.integer else ''} are refused with one error line."
        )

    def prepare(self, batch: Any) -> np.ndarray:
        """The batch as float32 in the stored layout, scaled; LnlError naming the first problem."""
        x = _numbers(batch)
        if x.ndim < 2 or x.shape[0] == 0:
            raise LnlError(f"input must be a batch of samples of shape {self.shapes()} (got shape {x.shape})")
        laid = _to_layout(x, self.shape)
        if laid is None:
            raise LnlError(f"input must have shape {self.shapes()} (got {x.shape})")
        bad = ~np.isfinite(laid)
        if bad.any():
            raise LnlError(f"input contains NaN or infinite values (first in sample {int(np.argwhere(bad)[0][0])})")
        low, high = float(laid.min()), float(laid.max())
        if low < self.low or high > self.high:
            got = f"min {low:g}" if low < self.low else f"max {high:g}"
            raise LnlError(f"input values must lie in [{self.low:g}, {self.high:g}] like {self.like()} (got {got})")
        if self.integer and laid.dtype.kind == "f":
            fractional = laid != np.round(laid)
            if fractional.any():
                value = float(laid[fractional][0])
                raise LnlError(f"input values must be whole numbers {self.low:g}..{self.high:g} like {self.like()}, "
                               f"not already scaled (got {value:g})")
        return (laid.astype(np.float64) / self.scale).astype(np.float32)

    def raw(self, stored: np.ndarray) -> np.ndarray:
        """Stored rows back as the source gives them (for the input example)."""
        values = stored.astype(np.float64) * (self.scale if stored.dtype != np.uint8 else 1.0)
        if self.integer:
            values = np.round(values)
        values = values.astype(np.uint8 if self.dtype == "uint8" else np.float64)
        return values.reshape(len(stored), *self.source_shape)


def _numbers(batch: Any) -> np.ndarray:
    """A numeric array from an array, nested lists or a DataFrame (its rows); LnlError otherwise."""
    if hasattr(batch, "to_numpy"):  # pandas
        batch = batch.to_numpy()
    try:
        x = np.asarray(batch)
    except ValueError:  # ragged lists
        raise LnlError("input must be a rectangular array of numbers (rows of different lengths)") from None
    if x.dtype.kind in "biuf":
        return x
    if x.dtype.kind == "O":
        try:
            return np.asarray(x.tolist(), dtype=np.float64)
        except (TypeError, ValueError):
            pass
    raise LnlError(f"input must be numbers (got dtype {x.dtype})")


def _to_layout(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """`x` with samples in the stored layout `shape`: as is, channels-last → first, (H, W) or flat for one channel."""
    n, sample = x.shape[0], tuple(x.shape[1:])
    if sample == shape:
        return x
    if len(shape) == 3:
        c, h, w = shape
        if sample == (h, w, c):
            return x.transpose(0, 3, 1, 2)
        if c == 1 and sample in ((h, w), (h * w,)):
            return x.reshape(n, *shape)
    return None


def output_columns(classes: list[str]) -> list[str]:
    """`label`, `probability`, then one column per class (named by the class)."""
    return [*RESERVED, *(f"class_{c}" if c in RESERVED else str(c) for c in classes)]


class RawInputClassifier(mlflow.pyfunc.PythonModel):
    """The selected network behind the manifest's input checks; returns a DataFrame (see `output_columns`)."""

    def load_context(self, context) -> None:
        from components.models import load_model_checkpoint
        from components.models.nets import ProbabilityHead

        manifest = read_json(context.artifacts["manifest"])
        self.spec = InputSpec.from_manifest(manifest)
        self.classes = [str(c) for c in manifest["classes"]]
        net, _ = load_model_checkpoint(context.artifacts["weights"])  # torch.load(weights_only=True)
        self.model = ProbabilityHead(net).eval()

    def predict(self, context, model_input: np.ndarray, params: dict[str, Any] | None = None):
        """Class names and probabilities for a batch of raw samples; MlflowException (HTTP 400) for bad input."""
        import pandas as pd
        import torch
        from mlflow.exceptions import MlflowException

        try:
            x = self.spec.prepare(model_input)
        except LnlError as error:
            raise MlflowException.invalid_parameter_value(str(error)) from None
        with torch.inference_mode():
            parts = [self.model(torch.from_numpy(x[i : i + BATCH])).numpy() for i in range(0, len(x), BATCH)]
        probs = np.concatenate(parts)
        top = probs.argmax(1)
        columns = output_columns(self.classes)
        frame = pd.DataFrame(probs.astype(np.float64), columns=columns[2:])
        frame.insert(0, "probability", probs[np.arange(len(top)), top].astype(np.float64))
        frame.insert(0, "label", [self.classes[i] for i in top])
        return frame


def log_model(mlflow, root: Path):
    """Log the selected model of the pipeline in `root` as a RawInputClassifier pyfunc; returns the ModelInfo."""
    import pandas as pd
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    manifest = read_json(root / paths.DATA_MANIFEST)
    spec = InputSpec.from_manifest(manifest)
    columns = output_columns([str(c) for c in manifest["classes"]])
    from components.data.encoded import open_store

    with np.load(root / paths.DATASET_NPZ) as arrays:
        example = spec.raw(open_store(root / paths.STORE).take(arrays["test_idx"][:2]))
    outputs = Schema([ColSpec("string", "label"), *(ColSpec("double", c) for c in columns[1:])])
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=RawInputClassifier(),
        artifacts={"weights": str(root / paths.MODEL_SELECTED), "manifest": str(root / paths.DATA_MANIFEST)},
        code_paths=[str(Path(__file__).resolve().parent)],  # the components package, importable when served
        signature=ModelSignature(outputs=outputs),  # no input schema: raw data reaches `prepare` unchanged
        input_example=example,
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}",
                          f"pandas=={pd.__version__}"],  # explicit: MLflow's inference of them adds ≈ 9 s
        metadata={"how_to_call": spec.describe(columns), "input": manifest["input"], "output_columns": columns},
    )
