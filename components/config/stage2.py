"""params.yaml `stage2`: the recipe every method shares, the method, and one section per method.

The methods and their sections are not listed here: `components.methods.discover` finds them in
components/methods/ (a module per method declares its KIND and its settings model), and `Stage2Params` is built
from what it finds, so adding a method adds `stage2.<kind>` and a valid `stage2.method` value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model, field_validator, model_validator

from components.config.optim import CosineScheduleParams, OptimParams
from components.config.section import MethodParams, Section
from components.methods import discover


class SelectionParams(Section):
    """Label-free checkpoint selection: lowest mean CLID on unlabelled training images (every method)."""

    enabled: bool = True
    k: int = Field(5, ge=1, description="ensemble of the k lowest-CLID epochs (sum of test logits)")
    pool_size: int = Field(1000, ge=2)
    tau: float = Field(0.5, gt=0)
    transform: Literal["test", "train_strong"] = Field("test", description="train_strong = official parity")


_FOUND = discover()
METHOD_NAMES: tuple[str, ...] = tuple(_FOUND.methods)  # every valid stage2.method, in module-name order
TRUSTED_SPLIT_METHODS: tuple[str, ...] = tuple(  # their meta loss reads the validation split's labels
    kind for kind, entry in _FOUND.methods.items() if entry.params is not None and entry.params.TRUSTED_META_SET
)
METHOD_SECTIONS: dict[str, tuple[str, ...]] = {  # the stage2 sections each method reads: its own, then shared
    kind: entry.reads for kind, entry in _FOUND.methods.items()
}


class Stage2Shared(OptimParams):
    """Stage two's settings outside the method sections: the method and the recipe every method shares."""

    method: str = "ido"
    epochs: int = Field(30, ge=1)
    schedule: CosineScheduleParams = CosineScheduleParams()
    init: Literal["base", "scratch"] | None = Field(
        None, description="start from stage one's base model or a fresh network; null = the method's default"
    )

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in METHOD_NAMES:
            raise ValueError(f"unknown method '{value}'; choose one of {', '.join(METHOD_NAMES)}")
        return value

    @model_validator(mode="after")
    def _method_checks(self) -> Stage2Shared:
        """The chosen method's own check of its settings against the shared ones (`MethodParams.check`)."""
        section = getattr(self, self.method, None)
        if isinstance(section, MethodParams):
            section.check(self)
        return self


def _sections() -> dict[str, tuple[type, Section]]:
    """stage2.<name> → (model, default) for every discovered section, then `selection`."""
    taken = set(Stage2Shared.model_fields) | {"selection"}
    for name in _FOUND.sections:
        if name in taken:
            where = _FOUND.methods[name].path if name in _FOUND.methods else "components/methods"
            raise ImportError(f"{where}: section name '{name}' is already a stage2 setting; choose another KIND")
    fields = {name: (model, model()) for name, model in _FOUND.sections.items()}
    return {**fields, "selection": (SelectionParams, SelectionParams())}


Stage2Params = create_model(  # type: ignore[call-overload]
    "Stage2Params",
    __base__=Stage2Shared,
    __module__=__name__,
    __doc__="Stage two: a method found in components/methods, starting from stage one's base model (or from "
    "scratch); the shared recipe, then stage2.<kind> for each method and the shared sections (stage2.meta).",
    **_sections(),
)
