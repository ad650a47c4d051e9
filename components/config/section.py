"""The base of every params.yaml section: immutable, unknown keys forbidden, numbers kept numbers."""

from __future__ import annotations

import functools
import types
from typing import Any, Literal, Union, get_args, get_origin

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


class Section(BaseModel):
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
