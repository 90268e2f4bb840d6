"""Test helpers for nodes, written once: a private rclpy context, spinning, waiting, lifecycle cycles.

From a test module or conftest::

    from internvla_ros_common.testing import rclpy_context, spin_until, wait_for  # rclpy_context: a fixture

    def test_x(rclpy_context):
        node = MyNode(context=rclpy_context)

or ``with ros_context() as context:`` where a fixture does not fit.

``spin_until`` spins the given nodes on the calling thread (no background thread, no race with
entity destruction). ``Spinner`` spins an executor on a thread for tests that call blocking APIs
(trigger_* from the test thread, service calls); its loop survives entities destroyed while it
builds a wait set (rclpy raises InvalidHandle there) and never hands work to a pool that is shut down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.exceptions import InvalidHandle
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node

CYCLE = ("configure", "activate", "deactivate", "cleanup")


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, period: float = 0.01) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass (something else must spin)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(period)
    return bool(condition())


@contextmanager
def ros_context(args: list[str] | None = None) -> Iterator[Context]:
    """A private rclpy context (no global state shared between tests), shut down on exit.
    ``args`` are ROS arguments only; never the process's argv (rclpy.init(args=None) reads
    sys.argv, and rcl warns "deprecated remap" for every name:=value it finds there)."""
    context = Context()
    rclpy.init(args=[] if args is None else args, context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


try:  # a ready fixture for conftest.py files: `from internvla_ros_common.testing import rclpy_context`
    import pytest

    @pytest.fixture
    def rclpy_context() -> Iterator[Context]:
        """A private rclpy context per test, shut down after it."""
        with ros_context() as context:
            yield context

except ImportError:  # pragma: no cover - pytest is a test dependency only
    pass


def spin_until(nodes: Node | Iterable[Node], predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Spin ``nodes`` on this thread until ``predicate()`` holds; False after ``timeout`` seconds."""
    nodes = [nodes] if isinstance(nodes, Node) else list(nodes)
    executor = SingleThreadedExecutor(context=nodes[0].context)
    for node in nodes:
        executor.add_node(node)
    deadline = time.monotonic() + timeout
    try:
        while not predicate():
            if time.monotonic() >= deadline:
                return bool(predicate())
            try:
                executor.spin_once(timeout_sec=0.02)
            except InvalidHandle:
                continue
        return True
    finally:
        for node in nodes:
            executor.remove_node(node)
        executor.shutdown(timeout_sec=1.0)


class Spinner:
    """Spins an executor on a daemon thread until ``stop()`` (also a context manager)."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and self.executor.context.ok():
                try:
                    self.executor.spin_once(timeout_sec=0.02)
                except InvalidHandle:
                    continue
        except BaseException as exc:  # kept for the test to assert on: a dead spinner fails loudly
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        if self.error is not None:
            raise RuntimeError(f"the executor thread died: {self.error!r}") from self.error

    def __enter__(self) -> Spinner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_lifecycle_cycles(
    node: Any, n: int, on_cycle: Callable[[int], None] | None = None
) -> list[tuple[str, ...]]:
    """``n`` times configure -> activate -> deactivate -> cleanup; one tuple of result labels per
    cycle (("success",) * 4 when all went well). Stops early after a cycle with a failure.
    ``on_cycle(i)`` runs after each cycle (leak checks, assertions). Equal tuples are one shared
    object, so the list itself costs 8 bytes a cycle and does not blur a memory soak."""
    results = []
    shared: dict[tuple[str, ...], tuple[str, ...]] = {}
    for index in range(n):
        labels = []
        for name in CYCLE:
            result = getattr(node, f"trigger_{name}")()
            labels.append(_LABELS.get(result, str(result)))
        outcome = shared.setdefault(tuple(labels), tuple(labels))
        results.append(outcome)
        if on_cycle is not None:
            on_cycle(index)
        if any(label != "success" for label in outcome):
            break
    return results


_LABELS = {
    TransitionCallbackReturn.SUCCESS: "success",
    TransitionCallbackReturn.FAILURE: "failure",
    TransitionCallbackReturn.ERROR: "error",
}
