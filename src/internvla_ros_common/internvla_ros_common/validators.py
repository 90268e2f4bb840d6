"""Value checks of the parameter schemas: types and gpl's validators, with gpl's messages.

Each validator takes (name, value, *args) and returns a message naming parameter, value and rule,
or None. Pure Python: ``internvla_ros_common.schema`` builds on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


# ------------------------------------------------------------------------------------------ values
def format_value(value: Any) -> str:
    """A value as it reads in a message or a table: strings quoted, lists bracketed."""
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return is_int(value) or isinstance(value, float)


_ELEMENT_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "double": is_number,
    "int": is_int,
    "bool": lambda v: isinstance(v, bool),
}


def type_problem(name: str, type_: str, value: Any) -> str | None:
    """Message when ``value`` does not fit ``type_`` (an int is a valid double, as in YAML)."""
    if type_ == "none":
        return None
    if type_.endswith("_array"):
        element = type_[: -len("_array")]
        if isinstance(value, (list, tuple)) and all(_ELEMENT_CHECKS[element](v) for v in value):
            return None
        return f"Parameter '{name}' with the value {format_value(value)} must be a list of {element} values"
    if _ELEMENT_CHECKS[type_](value):
        return None
    return f"Parameter '{name}' with the value {format_value(value)} must be of type {type_}"


# -------------------------------------------------------------------------------------- validators
# Each validator: (name, value, *args) -> message or None. Messages follow gpl/rsl's wording.
def _bounds(name: str, value: Any, lo: float, hi: float) -> str | None:
    if lo <= value <= hi:
        return None
    return f"Parameter '{name}' with the value {format_value(value)} must be in [{lo}, {hi}]"


def _gt(name: str, value: Any, limit: float) -> str | None:
    return (
        None
        if value > limit
        else f"Parameter '{name}' with the value {format_value(value)} must be greater than {limit}"
    )


def _gt_eq(name: str, value: Any, limit: float) -> str | None:
    if value >= limit:
        return None
    return f"Parameter '{name}' with the value {format_value(value)} must be greater than or equal to {limit}"


def _lt(name: str, value: Any, limit: float) -> str | None:
    return (
        None
        if value < limit
        else f"Parameter '{name}' with the value {format_value(value)} must be less than {limit}"
    )


def _lt_eq(name: str, value: Any, limit: float) -> str | None:
    if value <= limit:
        return None
    return f"Parameter '{name}' with the value {format_value(value)} must be less than or equal to {limit}"


def _one_of(name: str, value: Any, choices: Sequence[Any]) -> str | None:
    if value in choices:
        return None
    return f"Parameter '{name}' with the value {format_value(value)} must be one of {format_value(list(choices))}"


def _size_gt(name: str, value: Any, size: int) -> str | None:
    if len(value) > size:
        return None
    return f"Length of parameter '{name}' is {len(value)} but must be greater than {size}"


def _size_lt(name: str, value: Any, size: int) -> str | None:
    if len(value) < size:
        return None
    return f"Length of parameter '{name}' is {len(value)} but must be less than {size}"


def _not_empty(name: str, value: Any) -> str | None:
    return None if len(value) > 0 else f"Parameter '{name}' cannot be empty"


def _unique(name: str, value: Any) -> str | None:
    repeated = sorted({format_value(v) for v in value if list(value).count(v) > 1})
    if not repeated:
        return None
    return f"Parameter '{name}' must only contain unique values (repeated: {', '.join(repeated)})"


def _element_bounds(name: str, value: Any, lo: float, hi: float) -> str | None:
    outside = [v for v in value if not lo <= v <= hi]
    if not outside:
        return None
    return f"Parameter '{name}' with the value {format_value(list(value))} must have every element in [{lo}, {hi}] (outside: {format_value(outside)})"


def _subset_of(name: str, value: Any, allowed: Sequence[Any]) -> str | None:
    extra = [v for v in value if v not in allowed]
    if not extra:
        return None
    return f"Parameter '{name}' with the value {format_value(list(value))} has entries {format_value(extra)} not in the set {format_value(list(allowed))}"


@dataclass(frozen=True)
class _Validator:
    check: Callable[..., str | None]
    arity: int  # number of arguments after the value
    kinds: tuple[str, ...]  # "number" (int/double), "string", "bool", "array"


VALIDATORS: dict[str, _Validator] = {
    "bounds": _Validator(_bounds, 2, ("number",)),
    "gt": _Validator(_gt, 1, ("number",)),
    "gt_eq": _Validator(_gt_eq, 1, ("number",)),
    "lt": _Validator(_lt, 1, ("number",)),
    "lt_eq": _Validator(_lt_eq, 1, ("number",)),
    "one_of": _Validator(_one_of, 1, ("number", "string")),
    "size_gt": _Validator(_size_gt, 1, ("array", "string")),
    "size_lt": _Validator(_size_lt, 1, ("array", "string")),
    "not_empty": _Validator(_not_empty, 0, ("array", "string")),
    "unique": _Validator(_unique, 0, ("array",)),
    "element_bounds": _Validator(_element_bounds, 2, ("array",)),
    "subset_of": _Validator(_subset_of, 1, ("array",)),
}
EXCLUSIVE_WITH_BOUNDS = ("gt", "gt_eq", "lt", "lt_eq")


def kind_of(type_: str) -> str:
    if type_.endswith("_array"):
        return "array"
    return {"double": "number", "int": "number"}.get(type_, type_)
