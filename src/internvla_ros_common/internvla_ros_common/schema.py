"""Parameter schemas in generate_parameter_library's YAML format, without ROS.

One YAML per node declares every parameter once: type, default, description, validation and
read-only. This module loads it, validates values with gpl's messages ("Parameter 'x' with the
value 3 must be in [0, 1]"), suggests the nearest names for unknown ones and renders the README
parameter table. It imports no rclpy so the checks and the README generator run anywhere;
``internvla_ros_common.params`` applies a schema to a node.

Format (a subset of gpl's, see the package README)::

    grounding_node:            # root key = node name
      topics:                  # groups nest; leaves get dotted names (topics.image)
        image:
          type: string
          default_value: camera/image_raw
          description: RGB image topic.
          read_only: true
      rate_hz:
        type: double
        default_value: 10.0
        validation:
          bounds<>: [0.1, 100.0]

CLI: ``python -m internvla_ros_common.schema readme README.md schema.yaml...`` rewrites each
node's block in README.md (``--check`` only reports drift).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from internvla_ros_common.readme_tables import markdown_table, readme_drift, update_readme
from internvla_ros_common.validators import (
    EXCLUSIVE_WITH_BOUNDS,
    VALIDATORS,
    format_value,
    is_int,
    kind_of,
    type_problem,
)

SCALAR_TYPES = ("string", "double", "int", "bool")
ARRAY_TYPES = ("string_array", "double_array", "int_array", "bool_array")
TYPES = (*SCALAR_TYPES, *ARRAY_TYPES, "none")
LEAF_KEYS = ("type", "default_value", "description", "read_only", "validation", "additional_constraints")

# Names that rclpy or libraries declare on every node: never reported as unknown.
LIBRARY_PARAMETERS = ("use_sim_time", "start_type_description_service")
LIBRARY_PREFIXES = ("qos_overrides.", "diagnostic_updater.")


class SchemaError(ValueError):
    """The schema file itself is wrong (unknown key, bad type, default failing its validation)."""


class _Required:
    """Sentinel: the parameter has no default and must be set (gpl: no default_value)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


__all__ = [
    "AUTOSTART",
    "REQUIRED",
    "NodeSchema",
    "ParameterSpec",
    "SchemaError",
    "format_value",
    "load_schema",
    "markdown_table",
    "parse_schema",
    "readme_drift",
    "type_problem",
    "update_readme",
]


# -------------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class ParameterSpec:
    """One leaf of the schema. ``default`` is REQUIRED when the YAML gives no default_value."""

    name: str
    type: str
    default: Any = REQUIRED
    description: str = ""
    read_only: bool = False
    validation: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    additional_constraints: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: Any) -> list[str]:
        """Every problem of ``value`` for this parameter (type first: validators need the right type)."""
        if value is None or value is REQUIRED:
            if self.type == "none":
                return []
            return [
                f"Parameter '{self.name}' is required and has no default: set it with -p {self.name}:=<{self.type}>"
            ]
        problem = type_problem(self.name, self.type, value)
        if problem:
            return [problem]
        messages = []
        for key, args in self.validation.items():
            message = VALIDATORS[key].check(self.name, value, *args)
            if message:
                messages.append(message)
        return messages

    def constraints_text(self) -> str:
        """Human text of the validation, read-only flag and additional constraints (tables, descriptors)."""
        parts = []
        for key, args in self.validation.items():
            if key == "bounds":
                parts.append(f"in [{args[0]}, {args[1]}]")
            elif key == "element_bounds":
                parts.append(f"each in [{args[0]}, {args[1]}]")
            elif key in ("one_of", "subset_of"):
                parts.append(f"{key.replace('_', ' ')} {format_value(list(args[0]))}")
            elif args:
                sign = {"gt": ">", "gt_eq": ">=", "lt": "<", "lt_eq": "<="}.get(key)
                parts.append(f"{sign} {args[0]}" if sign else f"{key.replace('_', ' ')} {args[0]}")
            else:
                parts.append(key.replace("_", " "))
        if self.additional_constraints:
            parts.append(self.additional_constraints)
        if self.read_only:
            parts.append("read-only")
        if self.required:
            parts.append("required")
        return "; ".join(parts)


@dataclass(frozen=True)
class NodeSchema:
    """All parameters of one node, by dotted name, in file order."""

    node_name: str
    parameters: dict[str, ParameterSpec]
    source: str = ""

    def defaults(self) -> dict[str, Any]:
        """Dotted name -> default for every parameter that has one."""
        return {n: s.default for n, s in self.parameters.items() if not s.required and s.type != "none"}

    def validate(self, values: Mapping[str, Any]) -> list[str]:
        """One message per failure over the whole parameter set: ``values`` override the defaults;
        a required parameter missing from ``values`` is a failure. Unknown names are not looked at
        here (see ``unknown_messages``)."""
        messages = []
        for name, spec in self.parameters.items():
            if spec.type == "none":
                continue
            messages += spec.check(values.get(name, spec.default))
        return messages

    def unknown_names(self, names: Iterable[str]) -> list[str]:
        """Names that are neither in the schema nor declared by rclpy or a library."""
        return [
            n
            for n in names
            if n not in self.parameters and n not in LIBRARY_PARAMETERS and not n.startswith(LIBRARY_PREFIXES)
        ]

    def unknown_messages(self, names: Iterable[str]) -> list[str]:
        """One line per unknown name, with the nearest valid names when there are close ones."""
        valid = [n for n, s in self.parameters.items() if s.type != "none"]
        messages = []
        for name in self.unknown_names(names):
            close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
            # also match on the last dotted part: 'imag' -> 'topics.image'
            leaves = {v.rsplit(".", 1)[-1]: v for v in valid}
            for leaf in difflib.get_close_matches(name.rsplit(".", 1)[-1], list(leaves), n=3, cutoff=0.75):
                if leaves[leaf] not in close:
                    close.append(leaves[leaf])
            head = f"Unknown parameter '{name}' for node {self.node_name}."
            if close:
                messages.append(f"{head} Did you mean: {', '.join(repr(c) for c in close[:3])}?")
            else:
                messages.append(f"{head} Valid names: {', '.join(valid)}")
        return messages

    def with_parameter(self, spec: ParameterSpec) -> NodeSchema:
        """A copy with one more parameter (the lifecycle base adds ``autostart`` this way)."""
        if spec.name in self.parameters:
            return self
        return replace(self, parameters={**self.parameters, spec.name: spec})


# ------------------------------------------------------------------------------------------ loading
def _parse_validation(where: str, type_: str, raw: Any) -> dict[str, tuple[Any, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SchemaError(f"{where}: 'validation' must be a mapping of validator<> to arguments")
    parsed: dict[str, tuple[Any, ...]] = {}
    for key, args in raw.items():
        name = str(key).removesuffix("<>")
        if name not in VALIDATORS:
            allowed = ", ".join(f"{v}<>" for v in VALIDATORS)
            raise SchemaError(f"{where}: unknown validator '{key}'. Allowed: {allowed}")
        validator = VALIDATORS[name]
        if kind_of(type_) not in validator.kinds:
            raise SchemaError(f"{where}: validator '{key}' does not apply to type {type_}")
        args = () if args is None else tuple(args) if isinstance(args, list) else (args,)
        if len(args) != validator.arity:
            raise SchemaError(
                f"{where}: validator '{key}' takes {validator.arity} argument(s), got {list(args)}"
            )
        if name in ("one_of", "subset_of") and not isinstance(args[0], list):
            raise SchemaError(f"{where}: '{key}' takes one list of choices: {key}: [[a, b]]")
        parsed[name] = args
    if "bounds" in parsed and any(k in parsed for k in EXCLUSIVE_WITH_BOUNDS):
        raise SchemaError(f"{where}: 'bounds<>' cannot be combined with gt<>/gt_eq<>/lt<>/lt_eq<>")
    return parsed


def _parse_leaf(where: str, name: str, raw: Mapping[str, Any]) -> ParameterSpec:
    unknown = [k for k in raw if k not in LEAF_KEYS]
    if unknown:
        raise SchemaError(
            f"{where}: unknown key(s) {unknown} in parameter '{name}'. Allowed: {list(LEAF_KEYS)}"
        )
    type_ = raw["type"]
    if type_ not in TYPES:
        raise SchemaError(f"{where}: parameter '{name}' has type {type_!r}; allowed: {', '.join(TYPES)}")
    spec = ParameterSpec(
        name=name,
        type=type_,
        default=raw.get("default_value", REQUIRED),
        description=str(raw.get("description", "")).strip(),
        read_only=bool(raw.get("read_only", False)),
        validation=_parse_validation(f"{where}: parameter '{name}'", type_, raw.get("validation")),
        additional_constraints=str(raw.get("additional_constraints", "")).strip(),
    )
    if spec.default is None and type_ != "none":
        raise SchemaError(
            f"{where}: parameter '{name}' has default_value null; leave it out to make it required"
        )
    if not spec.required and type_ != "none":
        if type_ == "double" and is_int(spec.default):
            spec = replace(spec, default=float(spec.default))
        if type_ == "double_array" and isinstance(spec.default, list):
            spec = replace(spec, default=[float(v) if is_int(v) else v for v in spec.default])
        problems = spec.check(spec.default)
        if problems:
            raise SchemaError(f"{where}: the default fails its own rules: {'; '.join(problems)}")
    return spec


def _walk(where: str, prefix: str, raw: Mapping[str, Any], out: dict[str, ParameterSpec]) -> None:
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if not isinstance(value, Mapping):
            raise SchemaError(
                f"{where}: '{name}' must be a group or a parameter with a 'type' key, got {value!r}"
            )
        if "type" in value:
            out[name] = _parse_leaf(where, name, value)
        else:
            if not value:
                raise SchemaError(f"{where}: group '{name}' is empty")
            _walk(where, f"{name}.", value, out)


def parse_schema(data: Mapping[str, Any], source: str = "<schema>") -> NodeSchema:
    """A schema from already-parsed YAML (one root key: the node name)."""
    if not isinstance(data, Mapping) or len(data) != 1:
        raise SchemaError(f"{source}: a schema has exactly one root key, the node name")
    ((node_name, body),) = data.items()
    if not isinstance(body, Mapping) or not body:
        raise SchemaError(f"{source}: node '{node_name}' declares no parameters")
    parameters: dict[str, ParameterSpec] = {}
    _walk(source, "", body, parameters)
    return NodeSchema(node_name=str(node_name), parameters=parameters, source=source)


def load_schema(path: str | Path) -> NodeSchema:
    """Load and check one gpl-format YAML; raises SchemaError naming the file and the key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SchemaError(f"{path}: cannot read the schema: {exc}") from exc
    return parse_schema(data, str(path))


AUTOSTART = ParameterSpec(
    name="autostart",
    type="bool",
    default=False,
    description="Configure and activate at start when run standalone (launch files drive the transitions instead).",
    read_only=True,
)
"""Added to every ManagedNode's schema by the lifecycle base."""


# --------------------------------------------------------------------------------------------- CLI
def _readme_command(args: argparse.Namespace) -> int:
    status = 0
    for schema_path in args.schemas:
        try:
            schema = load_schema(schema_path)
        except SchemaError as exc:
            print(exc, file=sys.stderr)
            return 1
        if args.check:
            drift = readme_drift(args.readme, schema)
            if drift:
                print(drift, file=sys.stderr)
                status = 1
        elif update_readme(args.readme, schema):
            print(f"{args.readme}: updated the parameters of {schema.node_name}")
    return status


def _table_command(args: argparse.Namespace) -> int:
    try:
        print(markdown_table(load_schema(args.schema)), end="")
    except SchemaError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done (no drift), 1 schema error or drift (--check), 2 usage."""
    parser = argparse.ArgumentParser(
        prog="python -m internvla_ros_common.schema",
        description="Parameter schemas (generate_parameter_library YAML format): README tables.",
        epilog="Exit codes: 0 success, 1 schema error or README drift (--check), 2 usage.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    readme = sub.add_parser("readme", help="rewrite (or --check) the parameter blocks of a README")
    readme.add_argument("readme", type=Path, help="README.md holding <!-- params:<node> begin/end --> blocks")
    readme.add_argument("schemas", type=Path, nargs="+", help="schema YAML files, one per node")
    readme.add_argument("--check", action="store_true", help="only report drift (exit 1), change nothing")
    readme.set_defaults(run=_readme_command)
    table = sub.add_parser("table", help="print the markdown table of one schema")
    table.add_argument("schema", type=Path, help="schema YAML file")
    table.set_defaults(run=_table_command)
    args = parser.parse_args(argv)
    if getattr(args, "readme", None) is not None and not args.readme.is_file():
        parser.error(f"no such README: {args.readme}")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
