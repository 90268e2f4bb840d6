"""grounding_node's parameters live in one schema: the README table and the bringup YAMLs agree with it."""

from __future__ import annotations

from pathlib import Path

import yaml

from internvla_ros_common.schema import load_schema, readme_drift

PACKAGE = Path(__file__).resolve().parents[1]
SCHEMA = PACKAGE / "internvla_perception" / "params" / "grounding_node.yaml"
BRINGUP_CONFIG = PACKAGE.parent / "internvla_bringup" / "config"


def test_every_parameter_has_a_description_and_the_readme_table_is_generated_from_the_schema():
    schema = load_schema(SCHEMA)
    assert all(spec.description for spec in schema.parameters.values())
    assert readme_drift(PACKAGE / "README.md", schema) is None


def test_the_bringup_yamls_only_override_parameters_the_schema_declares_with_valid_values():
    schema = load_schema(SCHEMA)
    checked = []
    for path in sorted(BRINGUP_CONFIG.glob("*.yaml")):
        section = yaml.safe_load(path.read_text()).get("/**/grounding_node")
        if section is None:  # this setup keeps every default
            continue
        values = section["ros__parameters"]
        assert schema.unknown_messages(values) == [], path.name
        assert schema.validate(values) == [], path.name
        checked.append(path.name)
    assert checked, "no bringup YAML overrides grounding_node: the test would prove nothing"
