"""ParamListener on a real rclpy node: descriptors, unknown and invalid overrides, runtime sets."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

from rcl_interfaces.msg import ParameterType  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from internvla_ros_common.params import ParameterSchemaError, ParamListener  # noqa: E402
from internvla_ros_common.schema import parse_schema  # noqa: E402

SCHEMA = parse_schema(
    {
        "camera_node": {
            "topics": {
                "image": {"type": "string", "default_value": "camera/image_raw", "read_only": True},
            },
            "rate_hz": {
                "type": "double",
                "default_value": 10.0,
                "description": "Request rate.",
                "validation": {"bounds<>": [0.5, 30.0]},
            },
            "retries": {"type": "int", "default_value": 3, "validation": {"bounds<>": [0, 5]}},
            "mode": {
                "type": "string",
                "default_value": "fast",
                "validation": {"one_of<>": [["fast", "slow"]]},
            },
            "joints": {"type": "string_array", "default_value": ["a", "b"]},
            "offsets": {"type": "double_array", "default_value": []},
            "checkpoint": {"type": "string", "description": "Required."},
        }
    }
)


@pytest.fixture
def make_node(rclpy_context):
    context = rclpy_context
    nodes = []

    def make(**overrides):
        node = Node(
            "camera_node",
            context=context,
            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
            automatically_declare_parameters_from_overrides=True,
        )
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.destroy_node()


def test_every_leaf_is_declared_with_its_descriptor_and_values_read_as_a_nested_namespace(make_node):
    node = make_node(checkpoint="/m.pt", rate_hz=2.5)
    listener = ParamListener(node, SCHEMA)
    params = listener.get_params()
    assert params.topics.image == "camera/image_raw" and params["topics.image"] == "camera/image_raw"
    assert (params.rate_hz, params.retries, params.checkpoint) == (2.5, 3, "/m.pt")
    assert params.joints == ["a", "b"] and params.offsets == []
    assert node.get_parameter("offsets").type_ == Parameter.Type.DOUBLE_ARRAY  # typed, though empty

    rate, image, retries = node.describe_parameters(["rate_hz", "topics.image", "retries"])
    assert rate.description == "Request rate." and rate.type == ParameterType.PARAMETER_DOUBLE
    assert (rate.floating_point_range[0].from_value, rate.floating_point_range[0].to_value) == (0.5, 30.0)
    assert rate.additional_constraints == "in [0.5, 30.0]"
    assert image.read_only and image.additional_constraints == "read-only"
    assert (retries.integer_range[0].from_value, retries.integer_range[0].to_value) == (0, 5)
    with pytest.raises(AttributeError, match="read-only"):
        params.rate_hz = 3.0


def test_an_unknown_override_is_rejected_with_the_nearest_name(make_node):
    node = make_node(checkpoint="/m.pt", rate_hx=2.0, use_sim_time=True)
    with pytest.raises(ParameterSchemaError) as raised:
        ParamListener(node, SCHEMA)
    assert raised.value.messages == [
        "Unknown parameter 'rate_hx' for node camera_node. Did you mean: 'rate_hz'?"
    ]


def test_every_invalid_start_value_is_reported_together(make_node):
    node = make_node(rate_hz=99.0, mode="turbo", retries=1.5)
    with pytest.raises(ParameterSchemaError) as raised:
        ParamListener(node, SCHEMA)
    assert raised.value.messages == [
        "Parameter 'rate_hz' with the value 99.0 must be in [0.5, 30.0]",
        "Parameter 'retries' with the value 1.5 must be of type int",
        "Parameter 'mode' with the value 'turbo' must be one of ['fast', 'slow']",
        "Parameter 'checkpoint' is required and has no default: set it with -p checkpoint:=<string>",
    ]


def test_an_int_given_for_a_double_says_how_to_write_it(make_node):
    node = make_node(checkpoint="/m.pt", rate_hz=5)
    with pytest.raises(ParameterSchemaError) as raised:
        ParamListener(node, SCHEMA)
    assert raised.value.messages == [
        "Parameter 'rate_hz' with the value 5 must be of type double: write 5.0 (-p rate_hz:=5.0)"
    ]


def test_an_invalid_runtime_set_is_refused_and_the_old_value_stays(make_node):
    node = make_node(checkpoint="/m.pt")
    listener = ParamListener(node, SCHEMA)
    before = listener.get_params()
    (result,) = node.set_parameters([Parameter("mode", value="turbo")])
    assert (
        not result.successful
        and result.reason == "Parameter 'mode' with the value 'turbo' must be one of ['fast', 'slow']"
    )
    (result,) = node.set_parameters([Parameter("rate_hz", value=50.0)])  # refused by the descriptor range
    assert not result.successful
    assert node.get_parameter("mode").value == "fast" and node.get_parameter("rate_hz").value == 10.0
    assert not listener.is_old(before)

    (result,) = node.set_parameters([Parameter("mode", value="slow")])
    assert result.successful
    assert listener.is_old(before) and listener.get_params().mode == "slow"


def test_a_read_only_parameter_is_refused_at_runtime(make_node):
    node = make_node(checkpoint="/m.pt", **{"topics.image": "other/image"})
    listener = ParamListener(node, SCHEMA)
    assert listener.get_params().topics.image == "other/image"  # settable at start
    (result,) = node.set_parameters([Parameter("topics.image", value="x")])
    assert not result.successful and "read-only" in result.reason
    assert node.get_parameter("topics.image").value == "other/image"
