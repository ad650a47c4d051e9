"""params.yaml `data` (where the data comes from, how it is split) and `noise` (the labels it is trained on)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from components.config.section import Section

NOISE_KINDS = (
    "none",
    "symmetric_exclusive",
    "symmetric_inclusive",
    "symmetric_inclusive_per_sample",
    "symmetric_exclusive_exact",
    "pairflip",
    "classmap",
    "instance",
)  # synthetic kinds (components.noise generators); `real` (below) reads labels that came with the data
REAL_NOISE = "real"
DATA_SOURCES = (
    "digits", "npz", "csv", "npy", "cifar10", "cifar100", "mnist", "fashion_mnist", "image_folder",
    "clothing1m", "mini_webvision", "animal10n", "food101n",
)
PATH_SOURCES = ("npz", "csv", "npy")  # read from data.path (a file; npy: a folder of .npy arrays)
ROOT_SOURCES = DATA_SOURCES[4:]  # every source read from a folder (data.root)
DECODED_SOURCES = ("clothing1m", "mini_webvision", "animal10n", "food101n")  # large photo sets: need data.image_size


class DataParams(Section):
    """Where the data comes from and how it is split."""

    source: Literal[DATA_SOURCES] = "digits"  # type: ignore[valid-type]
    path: str | None = Field(None, description="npz/csv file (required for those sources)")
    label_column: str = Field("label", description="csv: the column holding the class label")
    root: str | None = Field(None, description="folder of a benchmark or image source (required for those)")
    download: bool = Field(False, description="cifar10/cifar100: fetch the official archive into root if absent")
    image_size: int | None = Field(None, ge=4, description="decoded images are resized to this square side")
    keep_encoded: bool = Field(False, description="photo sources: keep the files encoded and decode each batch in "
                               "worker processes, a seeded random-resized crop of image_size for training, resize + "
                               "centre crop otherwise (the 224-px recipe); false: decode once into the store")
    labels_csv: str | None = Field(None, description="image_folder: CSV file,label[,trusted][,clean] for a flat folder")
    classes: tuple[str, ...] | None = Field(None, description="labels_csv: the class list, in label order; a label "
                                            "or clean value outside it is an error (default: the labels found)")
    food101_root: str | None = Field(None, description="food101n: the Food-101 folder (meta/test.txt, images/)")
    corrections: str | None = Field(None, description="CSV source_row,label[,trusted] or file,label[,trusted]: "
                                    "reviewed labels that replace the training labels (README: Reviewing labels)")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="trusted validation split, stratified; 0 = none "
                                "(all non-test rows train; model selection falls back to label-free or the last epoch)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="ignored by sources with an official test set")
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> DataParams:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for training")
        source = self.source
        if source in PATH_SOURCES and not self.path:
            raise ValueError(f"source '{source}' needs data.path")
        if source in ROOT_SOURCES and not self.root:
            raise ValueError(f"source '{source}' needs data.root (the dataset's folder)")
        if self.keep_encoded and self.image_size is None:
            raise ValueError("data.keep_encoded needs data.image_size: the side of the crops batches are decoded at")
        if source in DECODED_SOURCES and self.image_size is None:
            raise ValueError(f"source '{source}' needs data.image_size (e.g. 32 or 64): its photos are decoded into one array")
        misplaced = [
            name for name, allowed in (
                ("path", PATH_SOURCES), ("root", ROOT_SOURCES), ("download", ("cifar10", "cifar100")),
                ("image_size", ("image_folder", *DECODED_SOURCES)), ("keep_encoded", ("image_folder", *DECODED_SOURCES)),
                ("labels_csv", ("image_folder",)),
                ("classes", ("image_folder",)),
                ("food101_root", ("food101n",)),
            )
            if getattr(self, name) not in (None, False) and source not in allowed
        ]
        if misplaced:
            raise ValueError(f"{', '.join('data.' + m for m in misplaced)} not used by source '{source}' (remove or set to null)")
        if self.classes is not None:
            if not self.labels_csv:
                raise ValueError("data.classes lists the classes of data.labels_csv; set labels_csv or remove classes")
            repeated = sorted({c for c in self.classes if self.classes.count(c) > 1})
            if len(self.classes) < 2 or repeated or not all(c.strip() for c in self.classes):
                raise ValueError("data.classes must name at least 2 distinct, non-empty classes"
                                 + (f" (repeated: {', '.join(repeated)})" if repeated else ""))
        if source == "food101n" and not self.food101_root:
            raise ValueError("source 'food101n' needs data.food101_root (Food-101, whose test split is the test set)")
        return self


class NoiseParams(Section):
    """Synthetic label noise injected into the training split (components/noise: one generator per kind)."""

    kind: Literal[(*NOISE_KINDS, REAL_NOISE)] = "symmetric_exclusive"  # type: ignore[valid-type]
    rate: float = Field(0.4, ge=0, lt=1)
    sampling: Literal["exact", "per_sample"] = Field("exact", description="pairflip/classmap only")
    class_map: str | dict[int, int] | None = Field(
        None, description="classmap: a named map (cifar10, mnist, cifar100, cifar100_superclass) or {source: target}"
    )
    idn_norm_std: float = Field(0.1, gt=0)
    idn_pixel_scale: Literal["raw", "unit"] = Field("raw", description="instance: raw pixel values or [0,1]")
    val_labels: Literal["clean", "noisy"] = Field("clean", description="clean = a trusted validation split")
    label_file: str | None = Field(None, description="real: CIFAR-10_human.pt / CIFAR-100_human.pt (CIFAR-N)")
    label_set: str | None = Field(None, description="real + label_file: aggre, random1-3, worst (CIFAR-10N) or noisy (CIFAR-100N)")
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> NoiseParams:
        if self.kind == "classmap" and self.class_map is None:
            raise ValueError("kind 'classmap' needs noise.class_map")
        if self.kind != REAL_NOISE and (self.label_file or self.label_set):
            raise ValueError("noise.label_file / noise.label_set are only read by kind 'real'")
        if self.label_file and not self.label_set:
            raise ValueError("noise.label_file needs noise.label_set (e.g. aggre, worst, noisy)")
        if self.label_set and not self.label_file:
            raise ValueError("noise.label_set needs noise.label_file (the CIFAR-N .pt file)")
        return self
