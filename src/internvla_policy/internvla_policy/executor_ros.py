"""chunk_executor's process-level ROS helpers: the realtime control thread and the standalone main().

The control loop is a thread of its own (``internvla_core.control_loop``: absolute deadlines, SCHED_FIFO
at ``thread_priority`` when granted, as ros2_control's update loop), not an rclpy timer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from internvla_core.control_loop import ControlLoop, set_thread_realtime


def realtime_spin_threads(thread_priority: int) -> str:
    """SCHED_FIFO one below ``thread_priority`` for the calling thread and the threads it creates after.

    Call it on the thread that builds the rclpy executor, before it spins. Why: the control thread needs
    the GIL, and a callback thread holding it but preempted by normal-priority work (the model, on the
    same cores) makes the control thread wait however high its own priority (priority inversion;
    bench/bench_executor.py: p99 5.5 ms with only the control thread at SCHED_FIFO, under 1 ms with the
    callback threads too). Returns "" when granted or not asked (priority 0 or 1), else why not.
    """
    if thread_priority <= 1:
        return ""
    return set_thread_realtime(thread_priority - 1)


def lower_gil_switch_interval(node, interval: float) -> None:
    """Lower the process-wide sys.setswitchinterval (0 = leave it): the control thread waits up to this
    long for the GIL another thread holds."""
    if 0 < interval < sys.getswitchinterval():
        sys.setswitchinterval(interval)
        node.get_logger().info(f"GIL switch interval lowered to {interval * 1e3:.2f} ms (process-wide)")


def start_control_loop(node, period: float, tick: Callable[[], None], priority: int) -> ControlLoop:
    """The control thread; a tick that raises is logged (once per 5 s) and answered with the hold."""

    def on_error(exc: BaseException) -> None:
        log = node.get_logger()
        log.error(
            f"control tick failed: {exc!r}; holding the last commanded setpoint", throttle_duration_sec=5.0
        )
        try:
            with node.command_lock:
                node.publish_hold(f"tick failed: {exc!r}")
        except Exception as hold_exc:  # the hold itself failed: nothing more to do than say it
            log.error(f"hold after a failed tick failed too: {hold_exc!r}", throttle_duration_sec=5.0)

    loop = ControlLoop(period, tick, priority=priority, name="chunk_executor_control", on_error=on_error)
    loop.start()
    if loop.priority_error:
        node.get_logger().warning(
            f"thread_priority {priority}: {loop.priority_error}; "
            "the control thread runs at normal scheduling (period jitter of several ms under load)"
        )
    return loop


def stop_control_loop(node, loop: ControlLoop | None) -> None:
    if loop is not None and not loop.stop(timeout=5.0):
        node.get_logger().error("the control thread did not stop within 5 s (a tick is stuck)")


def run_standalone(node_class: type, args: Sequence[str] | None = None) -> None:
    """The executor as a process: the callback threads at realtime priority too (see above)."""
    from internvla_ros_common.node_main import run_node

    def make_node():
        node = node_class()
        problem = realtime_spin_threads(node.param_listener.get_params().thread_priority)
        if problem:
            node.get_logger().warning(f"callback threads at normal scheduling: {problem}")
        return node

    summary = (node_class.__doc__ or "").strip().splitlines()[0]
    sys.exit(run_node(make_node, args, schema_path=node_class.SCHEMA_PATH, summary=summary, threads=3))
