"""Small ManagedNode variants run as processes by test_node_main.py:
``python nodes_for_tests.py <variant> [args...]`` runs ``run_node`` on that variant."""

from __future__ import annotations

import sys

from internvla_ros_common.example_node import EchoNode
from internvla_ros_common.node_main import run_node


class FailingCallback(EchoNode):
    """A heartbeat that raises: a bug in a callback while the node runs."""

    def _on_heartbeat(self) -> None:
        raise ValueError("bad heartbeat")


class FailingSetup(EchoNode):
    """A setup that raises torch's error for a CPU-only wheel asked for cuda."""

    def setup(self, params) -> None:
        super().setup(params)
        raise AssertionError("Torch not compiled with CUDA enabled")


class SlowSetup(EchoNode):
    """A configure that takes long (a model load): prints when it starts so a test can signal it."""

    def setup(self, params) -> None:
        import time

        print("setup started", flush=True)
        time.sleep(3.0)
        super().setup(params)
        print("setup finished", flush=True)


VARIANTS = {"failing_callback": FailingCallback, "failing_setup": FailingSetup, "slow_setup": SlowSetup}

if __name__ == "__main__":
    sys.exit(run_node(VARIANTS[sys.argv[1]], sys.argv[1:]))
