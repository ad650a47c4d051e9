"""The base of every params.yaml section: immutable, unknown keys forbidden, numbers kept numbers.

`MethodParams` is the base of a stage-two method's own section (stage2.<kind>), defined in the method's module
(components/methods/<kind>.py) and found there by `components.methods.discover`.
"""

from __future__ import annotations

import contextlib
import functools
import types
from collections.abc import Iterator
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError


@functools.cache
def _accepts(annotation: Any) -> tuple[bool, bool, tuple[str, ...], Any]:
    """What a field type takes: (a number, any string, the allowed literal strings, the item type of a list/tuple)."""
    number, string, literals, item = False, False, (), None
    for arg in get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,):
        origin = get_origin(arg)
        if arg in (int, float):
            number = True
        elif arg is str:
            string = True
        elif origin is Literal:
            literals += tuple(v for v in get_args(arg) if isinstance(v, str))
        elif origin in (list, tuple) and get_args(arg):
            item = get_args(arg)[0]
    return number, string, literals, item


def _not_a_number(value: Any, annotation: Any) -> str | None:
    """Why `value` must not be coerced into the number `annotation` wants ('3' or true for an int), else None."""
    number, string, literals, item = _accepts(annotation)
    if isinstance(value, (list, tuple)) and item is not None:
        return next((p for p in (_not_a_number(v, item) for v in value) if p), None)
    if not number or string or (isinstance(value, str) and value in literals):
        return None
    expected = "a number" + (f" or one of {', '.join(literals)}" if literals else "")
    if isinstance(value, bool):
        return f"expected {expected}, not the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"expected {expected}, not the string {value!r}"
    return None


_PREBUILT: dict[tuple[str, str], type] = {}  # (module, qualified name) → a model built by `prebuilding`
_prebuilding = False


@contextlib.contextmanager
def prebuilding() -> Iterator[None]:
    """Models defined inside this block are the ones their module gets whenever its class statements run again.

    Method discovery builds each method's settings model from the module's source without importing the module
    (which imports torch); when the module is imported for real, its class statement returns that same model,
    so `components.methods.ido.IdoParams is type(params.stage2.ido)` holds whatever was imported first.
    """
    global _prebuilding
    before, _prebuilding = _prebuilding, True
    try:
        yield
    finally:
        _prebuilding = before


class _SectionMeta(type(BaseModel)):  # type: ignore[misc]
    """pydantic's model metaclass, plus the `prebuilding` rule above."""

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any) -> type:
        key = (namespace.get("__module__", ""), namespace.get("__qualname__", name))
        if key in _PREBUILT:
            return _PREBUILT[key]
        # pydantic would read this frame, not the class statement's, as the namespace the class is defined in;
        # for a class defined at module level (every section) it reads none, which is what this asks for
        kwargs.setdefault("__pydantic_reset_parent_namespace__", False)
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        if _prebuilding:
            _PREBUILT[key] = cls
        return cls


class Section(BaseModel, metaclass=_SectionMeta):
    """Base of every params section: immutable, strict about unknown keys and about numbers (a quoted '3' or a
    boolean is not taken for one; YAML 1.2's 1e-3 is a float, see load_params)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        problem = _not_a_number(value, cls.model_fields[info.field_name].annotation)
        if problem:
            raise PydanticCustomError("not_a_number", problem)
        return value


class MethodParams(Section):
    """A stage-two method's own settings: params.yaml stage2.<kind>, read only when stage2.method is that kind."""

    TRUSTED_META_SET: ClassVar[bool] = False  # True: the method's meta loss reads the validation split's labels

    def check(self, stage2: Any) -> None:
        """Raise ValueError where these settings contradict the rest of `stage2` (the chosen method's only)."""
