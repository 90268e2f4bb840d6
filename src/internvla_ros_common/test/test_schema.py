"""The schema loader without ROS: gpl format, every validator, unknown names, README tables and drift."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from internvla_ros_common import schema as schema_module
from internvla_ros_common.schema import (
    REQUIRED,
    SchemaError,
    load_schema,
    markdown_table,
    parse_schema,
    readme_drift,
    update_readme,
)

GROUNDING = """
grounding_node:
  topics:
    image_topic:
      type: string
      default_value: camera/image_raw
      description: RGB image topic.
      read_only: true
    depth:
      topic:
        type: string
        default_value: camera/depth
  rate_hz:
    type: double
    default_value: 10
    description: Rate | of requests.
    validation:
      bounds<>: [0.5, 30.0]
  checkpoint:
    type: string
    description: Model checkpoint (required).
  device:
    type: string
    default_value: cpu
    validation:
      one_of<>: [[cpu, cuda]]
  joints:
    type: string_array
    default_value: [a, b]
    validation:
      not_empty<>: []
      unique<>:
  notes:
    type: none
    description: Documented only.
"""


def write(tmp_path: Path, text: str, name: str = "grounding_node.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def grounding(tmp_path):
    return load_schema(write(tmp_path, GROUNDING))


def test_nested_groups_become_dotted_names_in_file_order(grounding):
    assert grounding.node_name == "grounding_node"
    assert list(grounding.parameters) == [
        "topics.image_topic",
        "topics.depth.topic",
        "rate_hz",
        "checkpoint",
        "device",
        "joints",
        "notes",
    ]
    image = grounding.parameters["topics.image_topic"]
    assert (image.type, image.default, image.read_only, image.description) == (
        "string",
        "camera/image_raw",
        True,
        "RGB image topic.",
    )


def test_leaf_without_default_is_required_and_left_out_of_defaults(grounding):
    assert grounding.parameters["checkpoint"].default is REQUIRED
    assert grounding.parameters["checkpoint"].required
    defaults = grounding.defaults()
    assert "checkpoint" not in defaults and "notes" not in defaults
    assert defaults["rate_hz"] == 10.0 and isinstance(defaults["rate_hz"], float)  # int default of a double


def test_validate_reports_every_failure_and_a_missing_required_value(grounding):
    messages = grounding.validate({"rate_hz": 100.0, "device": "tpu"})
    assert messages == [
        "Parameter 'rate_hz' with the value 100.0 must be in [0.5, 30.0]",
        "Parameter 'checkpoint' is required and has no default: set it with -p checkpoint:=<string>",
        "Parameter 'device' with the value 'tpu' must be one of ['cpu', 'cuda']",
    ]
    assert grounding.validate({"checkpoint": "/m.pt"}) == []


@pytest.mark.parametrize(
    ("type_", "rule", "args", "good", "bad", "message"),
    [
        ("double", "bounds", [0, 1], 1.0, 3.0, "Parameter 'x' with the value 3.0 must be in [0, 1]"),
        ("int", "gt", [5], 6, 5, "Parameter 'x' with the value 5 must be greater than 5"),
        ("int", "gt_eq", [5], 5, 4, "Parameter 'x' with the value 4 must be greater than or equal to 5"),
        ("double", "lt", [1.5], 1.0, 1.5, "Parameter 'x' with the value 1.5 must be less than 1.5"),
        (
            "double",
            "lt_eq",
            [1.5],
            1.5,
            2.0,
            "Parameter 'x' with the value 2.0 must be less than or equal to 1.5",
        ),
        (
            "string",
            "one_of",
            [["a", "b"]],
            "a",
            "c",
            "Parameter 'x' with the value 'c' must be one of ['a', 'b']",
        ),
        ("int_array", "size_gt", [1], [1, 2], [1], "Length of parameter 'x' is 1 but must be greater than 1"),
        ("string", "size_lt", [3], "ab", "abc", "Length of parameter 'x' is 3 but must be less than 3"),
        ("string", "not_empty", [], "a", "", "Parameter 'x' cannot be empty"),
        (
            "string_array",
            "unique",
            [],
            ["a", "b"],
            ["a", "b", "a"],
            "Parameter 'x' must only contain unique values (repeated: 'a')",
        ),
        (
            "double_array",
            "element_bounds",
            [0, 1],
            [0.0, 1.0],
            [0.5, 2.0],
            "Parameter 'x' with the value [0.5, 2.0] must have every element in [0, 1] (outside: [2.0])",
        ),
        (
            "string_array",
            "subset_of",
            [["a", "b"]],
            ["b"],
            ["b", "z"],
            "Parameter 'x' with the value ['b', 'z'] has entries ['z'] not in the set ['a', 'b']",
        ),
    ],
)
def test_each_validator_passes_good_values_and_names_parameter_value_and_rule(
    type_, rule, args, good, bad, message
):
    schema = parse_schema(
        {"n": {"x": {"type": type_, "default_value": good, "validation": {f"{rule}<>": args}}}}
    )
    spec = schema.parameters["x"]
    assert spec.check(good) == []
    assert spec.check(bad) == [message]


@pytest.mark.parametrize(
    ("type_", "value", "expected"),
    [
        ("int", 1.5, "must be of type int"),
        ("int", True, "must be of type int"),
        ("bool", 1, "must be of type bool"),
        ("string", 3, "must be of type string"),
        ("double", "fast", "must be of type double"),
        ("double_array", [1.0, "a"], "must be a list of double values"),
    ],
)
def test_values_of_the_wrong_type_are_refused_before_any_validator(type_, value, expected):
    spec = parse_schema({"n": {"x": {"type": type_}}}).parameters["x"]
    (message,) = spec.check(value)
    assert message.startswith("Parameter 'x' with the value") and expected in message


def test_an_int_is_a_valid_double_as_in_yaml():
    spec = parse_schema({"n": {"x": {"type": "double", "validation": {"gt<>": [0]}}}}).parameters["x"]
    assert spec.check(2) == []


@pytest.mark.parametrize(
    ("leaf", "error"),
    [
        ({"type": "double", "defualt_value": 1.0}, "unknown key(s) ['defualt_value'] in parameter 'group.x'"),
        ({"type": "float"}, "has type 'float'"),
        ({"type": "double", "validation": {"between<>": [0, 1]}}, "unknown validator 'between<>'"),
        ({"type": "double", "validation": {"bounds<>": [0, 1], "gt<>": [0]}}, "cannot be combined"),
        ({"type": "double", "validation": {"bounds<>": [0]}}, "takes 2 argument(s)"),
        ({"type": "string", "validation": {"bounds<>": [0, 1]}}, "does not apply to type string"),
        ({"type": "string", "validation": {"one_of<>": ["a", "b"]}}, "takes 1 argument(s)"),
        (
            {"type": "double", "default_value": 5.0, "validation": {"lt<>": [1]}},
            "the default fails its own rules",
        ),
        ({"type": "double", "default_value": None}, "default_value null"),
    ],
)
def test_a_wrong_leaf_fails_load_naming_file_and_parameter(tmp_path, leaf, error):
    path = tmp_path / "n.yaml"

    path.write_text(yaml.safe_dump({"n": {"group": {"x": leaf}}}))
    with pytest.raises(SchemaError) as raised:
        load_schema(path)
    assert error in str(raised.value) and str(path) in str(raised.value)


def test_a_schema_needs_one_root_key_and_parameters(tmp_path):
    with pytest.raises(SchemaError, match="exactly one root key"):
        parse_schema({"a": {"x": {"type": "int"}}, "b": {}})
    with pytest.raises(SchemaError, match="declares no parameters"):
        parse_schema({"a": {}})
    with pytest.raises(SchemaError, match="must be a group or a parameter"):
        parse_schema({"a": {"x": 3}})
    with pytest.raises(SchemaError, match="cannot read"):
        load_schema(tmp_path / "missing.yaml")


def test_unknown_names_get_the_nearest_valid_names_first(grounding):
    first, second = grounding.unknown_messages(["imag_topic", "topics.image_topc", "rate_hz", "use_sim_time"])
    assert (
        first == "Unknown parameter 'imag_topic' for node grounding_node. Did you mean: 'topics.image_topic'?"
    )
    assert second.startswith(
        "Unknown parameter 'topics.image_topc' for node grounding_node. Did you mean: 'topics.image_topic'"
    )


def test_unknown_names_without_a_close_match_list_the_valid_names(grounding):
    (message,) = grounding.unknown_messages(["zzz"])
    assert message.startswith(
        "Unknown parameter 'zzz' for node grounding_node. Valid names: topics.image_topic,"
    )
    assert "notes" not in message  # a documented-only (type none) entry cannot be set


def test_names_declared_by_rclpy_and_libraries_are_never_unknown(grounding):
    names = [
        "use_sim_time",
        "start_type_description_service",
        "qos_overrides./tf.publisher.depth",
        "diagnostic_updater.period",
    ]
    assert grounding.unknown_messages(names) == []


def test_markdown_table_has_one_row_per_leaf_with_type_default_and_rules(grounding):
    table = markdown_table(grounding)
    lines = table.splitlines()
    assert lines[0] == "| Parameter | Type | Default | Description | Constraints |"
    assert len(lines) == 2 + len(grounding.parameters)
    assert "| `rate_hz` | double | `10.0` | Rate \\| of requests. | in [0.5, 30.0] |" in lines
    assert "| `checkpoint` | string |  | Model checkpoint (required). | required |" in lines
    assert "| `topics.image_topic` | string | `'camera/image_raw'` | RGB image topic. | read-only |" in lines
    assert "| `device` | string | `'cpu'` |  | one of ['cpu', 'cuda'] |" in lines


def test_update_readme_fills_the_block_and_drift_is_seen_after_a_schema_change(tmp_path, grounding):
    readme = tmp_path / "README.md"
    readme.write_text(
        "# pkg\n\nintro\n\n<!-- params:grounding_node begin -->\nold table\n<!-- params:grounding_node end -->\n\ntail\n"
    )
    assert "differs from" in readme_drift(readme, grounding)
    assert update_readme(readme, grounding) is True
    assert readme_drift(readme, grounding) is None
    text = readme.read_text()
    assert text.startswith("# pkg\n\nintro\n\n") and text.endswith("\n\ntail\n") and "old table" not in text
    assert update_readme(readme, grounding) is False  # idempotent

    changed = write(tmp_path, GROUNDING.replace("default_value: cpu", "default_value: cuda"))
    drift = readme_drift(readme, load_schema(changed))
    assert (
        "python -m internvla_ros_common.schema readme" in drift and "+| `device` | string | `'cuda'`" in drift
    )


def test_update_readme_appends_a_missing_block_and_drift_names_the_markers(tmp_path, grounding):
    readme = tmp_path / "README.md"
    readme.write_text("# pkg\n")
    assert "<!-- params:grounding_node begin -->" in readme_drift(readme, grounding)
    update_readme(readme, grounding)
    assert "### `grounding_node` parameters" in readme.read_text()
    assert readme_drift(readme, grounding) is None


def test_cli_rewrites_checks_and_uses_exit_codes(tmp_path, capsys):
    schema_path = write(tmp_path, GROUNDING)
    readme = tmp_path / "README.md"
    readme.write_text("# pkg\n")
    assert schema_module.main(["readme", str(readme), str(schema_path), "--check"]) == 1
    assert schema_module.main(["readme", str(readme), str(schema_path)]) == 0
    assert schema_module.main(["readme", str(readme), str(schema_path), "--check"]) == 0
    broken = write(tmp_path, "n:\n  x:\n    type: float\n", "broken.yaml")
    assert schema_module.main(["readme", str(readme), str(broken)]) == 1
    assert schema_module.main(["table", str(schema_path)]) == 0
    assert "| `rate_hz` |" in capsys.readouterr().out
    for usage in (["readme"], ["frobnicate"], ["readme", str(tmp_path / "none.md"), str(schema_path)]):
        with pytest.raises(SystemExit) as raised:
            schema_module.main(usage)
        assert raised.value.code == 2


def test_the_package_readme_table_of_echo_node_matches_its_schema():
    package = Path(__file__).resolve().parents[1]
    schema = load_schema(package / "internvla_ros_common" / "params" / "echo_node.yaml")
    assert readme_drift(package / "README.md", schema) is None
