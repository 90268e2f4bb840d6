"""echo_node: the smallest ManagedNode, the pattern every node of the project follows.

Schema -> QoS -> setup (load "model", lifecycle publisher) -> activate (subscription, timer)
-> callbacks convert and publish. Also the default target of bench/bench_lifecycle_soak.py.
"""

from __future__ import annotations

from pathlib import Path

from std_msgs.msg import String

from internvla_ros_common import qos
from internvla_ros_common.lifecycle import ManagedNode
from internvla_ros_common.node_main import main_for
from internvla_ros_common.params import Params

SCHEMA = Path(__file__).parent / "params" / "echo_node.yaml"


class EchoNode(ManagedNode):
    """Echoes std_msgs/String messages with a prefix while active, plus a heartbeat."""

    def __init__(self, node_name: str = "echo_node", **kwargs) -> None:
        super().__init__(node_name, SCHEMA, **kwargs)
        self.output = None
        self.prefix = ""
        self.heartbeats = 0

    def setup(self, params: Params) -> None:
        self.prefix = params.prefix
        if params.model_file:  # the slow, fallible part of configure (a model load in real nodes)
            self.prefix = Path(params.model_file).read_text().splitlines()[0]
        self.output = self.create_lifecycle_publisher(String, params.topics.output, qos.STATUS)

    def activate(self) -> None:
        self.managed_subscription(String, self.params.topics.input, self._on_input, qos.STATUS)
        self.managed_timer(1.0 / self.params.heartbeat_hz, self._on_heartbeat)

    def teardown(self) -> None:
        self.output = None  # the base destroys the lifecycle publisher itself
        self.prefix = ""

    def _on_input(self, msg: String) -> None:
        self.output.publish(String(data=self.prefix + msg.data))

    def _on_heartbeat(self) -> None:
        self.heartbeats += 1
        self.output.publish(String(data=f"heartbeat {self.heartbeats}"))


main = main_for(EchoNode)

if __name__ == "__main__":
    main()
