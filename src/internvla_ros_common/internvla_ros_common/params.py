"""ParamListener: a schema (internvla_ros_common.schema) applied to an rclpy node.

Like generate_parameter_library's Python ``ParamListener``: every leaf is declared with a
ParameterDescriptor (description, read-only, bounds as floating/integer range, the rules as
additional_constraints text); the start values are validated in one pass and every problem is
raised together; a runtime set that breaks a rule is refused and the old value stays.

Unknown names. rclpy keeps ``-p`` overrides for undeclared names without a word, and the only
place it keeps them is private. The public route: build the node with
``automatically_declare_parameters_from_overrides=True`` (ManagedNode does), so every override
is declared before the listener runs; the listener compares the node's parameter names with the
schema, then re-declares each schema name with its descriptor (the override value is kept).
On a node built without that flag, unknown overrides cannot be seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterUninitializedException,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

from internvla_ros_common.schema import REQUIRED, NodeSchema, ParameterSpec, format_value, load_schema

ROS_TYPES = {
    "string": Parameter.Type.STRING,
    "double": Parameter.Type.DOUBLE,
    "int": Parameter.Type.INTEGER,
    "bool": Parameter.Type.BOOL,
    "string_array": Parameter.Type.STRING_ARRAY,
    "double_array": Parameter.Type.DOUBLE_ARRAY,
    "int_array": Parameter.Type.INTEGER_ARRAY,
    "bool_array": Parameter.Type.BOOL_ARRAY,
}


class ParameterSchemaError(ValueError):
    """Start parameters that break the schema; ``messages`` holds one line per problem."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


class Params:
    """Read-only nested view of parameter values: ``p.topics.image``; ``p["topics.image"]`` too."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        groups: dict[str, dict[str, Any]] = {}
        leaves: dict[str, Any] = {}
        for name, value in values.items():
            head, _, rest = name.partition(".")
            if rest:
                groups.setdefault(head, {})[rest] = value
            else:
                leaves[head] = value
        object.__setattr__(self, "_flat", dict(values))
        object.__setattr__(self, "_fields", {**leaves, **{k: Params(v) for k, v in groups.items()}})

    def __getattr__(self, name: str) -> Any:
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(
                f"no parameter or group '{name}' (have: {', '.join(self._fields)})"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("parameters are read-only here: set them on the node (ros2 param set)")

    def __getitem__(self, dotted_name: str) -> Any:
        return self._flat[dotted_name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._flat)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Params) and other._flat == self._flat

    def __repr__(self) -> str:
        return f"Params({self._flat!r})"

    def as_dict(self) -> dict[str, Any]:
        """Dotted name -> value (a copy)."""
        return dict(self._flat)


def descriptor_for(spec: ParameterSpec) -> ParameterDescriptor:
    """The ROS descriptor of one schema leaf: tools (ros2 param describe, rqt) show it."""
    descriptor = ParameterDescriptor(
        name=spec.name,
        type=ROS_TYPES[spec.type].value,
        description=spec.description,
        read_only=spec.read_only,
        additional_constraints=spec.constraints_text(),
    )
    bounds = spec.validation.get("bounds")
    if bounds and spec.type == "double":
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=float(bounds[0]), to_value=float(bounds[1]))
        ]
    elif bounds and spec.type == "int" and all(isinstance(b, int) for b in bounds):
        descriptor.integer_range = [IntegerRange(from_value=bounds[0], to_value=bounds[1], step=0)]
    return descriptor


def _plain(value: Any) -> Any:
    """rclpy returns arrays as array.array: give lists back so values compare and print as YAML does."""
    if value is not None and not isinstance(value, (str, bytes, bool, int, float, list)):
        return list(value)
    return value


def _start_value_problems(spec: ParameterSpec, value: Any) -> list[str]:
    """The schema's checks plus rclpy's strict typing: an int override is no double for rclpy."""
    if spec.type == "double" and isinstance(value, int) and not isinstance(value, bool):
        return [
            f"Parameter '{spec.name}' with the value {value} must be of type double: write {value}.0 "
            f"(-p {spec.name}:={value}.0)"
        ]
    if (
        spec.type == "double_array"
        and isinstance(value, (list, tuple))
        and any(isinstance(v, int) for v in value)
    ):
        return [
            f"Parameter '{spec.name}' with the value {format_value(list(value))} must be a list of doubles: write 1.0, not 1"
        ]
    return spec.check(value)


class ParamListener:
    """Declares the schema's parameters on ``node``, validates them, serves them as ``Params``.

    Raises ParameterSchemaError (one line per problem) for unknown overrides, missing required
    values and values that break a rule. Afterwards every set is validated; refused sets keep
    the old value."""

    def __init__(self, node: Node, schema: NodeSchema | str | Path) -> None:
        self._node = node
        self.schema = schema if isinstance(schema, NodeSchema) else load_schema(schema)
        self._params: Params | None = None
        problems = self._declare_all()
        if problems:
            raise ParameterSchemaError(problems)
        node.add_on_set_parameters_callback(self._validate_set)
        node.add_post_set_parameters_callback(self._mark_stale)

    # -------------------------------------------------------------------------------- declaration
    def _declare_all(self) -> list[str]:
        present = set(self._node.list_parameters([], 0).names)
        problems = self.schema.unknown_messages(sorted(present))
        for spec in self.schema.parameters.values():
            if spec.type == "none":
                continue
            if spec.name in present:  # an override, declared by rclpy without a descriptor
                value = _plain(self._node.get_parameter(spec.name).value)
                self._node.undeclare_parameter(spec.name)
                found = _start_value_problems(spec, value)
                if found:
                    problems += found
                    continue
            problems += self._declare(spec)
        return problems

    def _declare(self, spec: ParameterSpec) -> list[str]:
        descriptor = descriptor_for(spec)
        ros_type = ROS_TYPES[spec.type]
        empty_array = spec.type.endswith("_array") and spec.default == []
        initial = ros_type if spec.required or empty_array else spec.default
        try:
            self._node.declare_parameter(spec.name, initial, descriptor)
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            return [f"Parameter '{spec.name}': {exc}"]
        value = self._value(spec.name)
        if value is None and empty_array:  # rclpy cannot infer a type from []: set it typed
            self._node.set_parameters([Parameter(spec.name, ros_type, [])])
            return []
        return _start_value_problems(spec, value)

    def _value(self, name: str) -> Any:
        try:
            return _plain(self._node.get_parameter(name).value)
        except ParameterUninitializedException:
            return None

    # -------------------------------------------------------------------------------- runtime sets
    def _validate_set(self, parameters: list[Parameter]) -> SetParametersResult:
        messages = []
        for parameter in parameters:
            spec = self.schema.parameters.get(parameter.name)
            if spec is None:
                continue
            if spec.read_only:
                messages.append(
                    f"Parameter '{spec.name}' is read-only: pass it at start (-p {spec.name}:=...)"
                )
                continue
            messages += spec.check(_plain(parameter.value))
        return SetParametersResult(successful=not messages, reason="; ".join(messages))

    def _mark_stale(self, _parameters: list[Parameter]) -> None:
        self._params = None

    # ------------------------------------------------------------------------------------ reading
    def refresh(self) -> Params:
        """Re-read every value from the node (after sets) and return the new snapshot."""
        values = {}
        for name, spec in self.schema.parameters.items():
            if spec.type != "none":
                value = self._value(name)
                values[name] = REQUIRED if value is None and spec.required else value
        self._params = Params(values)
        return self._params

    def get_params(self) -> Params:
        """The current values; a new object after every accepted set (compare with ``is_old``)."""
        return self._params if self._params is not None else self.refresh()

    def is_old(self, params: Params) -> bool:
        """True when ``params`` no longer matches the node's values."""
        return params is not self.get_params()
