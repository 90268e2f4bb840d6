"""Parameter declaration with descriptions and ranges, shared by the policy and executor nodes."""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor


def declare(node, name: str, default, description: str, low=None, high=None) -> None:
    """Declare one parameter; numeric ones get a range so bad values are refused at set time."""
    descriptor = ParameterDescriptor(description=description)
    if low is not None and isinstance(default, float):
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high))]
    elif low is not None and isinstance(default, int) and not isinstance(default, bool):
        descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
    node.declare_parameter(name, default, descriptor)
