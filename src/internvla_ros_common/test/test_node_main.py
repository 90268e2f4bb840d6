"""run_node / main_for as a person meets them: --help, exit codes, bad -p, autostart, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from internvla_ros_common.node_main import split_ros_args

pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

NODE = [sys.executable, "-m", "internvla_ros_common.example_node"]
# the child sees the packages as this test does (pytest.ini's pythonpath, before colcon installs them)
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def run(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([*NODE, *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def test_split_keeps_ros_args_for_rcl_and_turns_bare_assignments_into_parameters():
    assert split_ros_args(["prog", "a:=1", "-p", "b:=2", "--ros-args", "-r", "x:=y", "--", "--help"]) == (
        ["-p", "a:=1", "-p", "b:=2", "-r", "x:=y"],
        ["prog", "--help"],
    )
    assert split_ros_args(["prog"]) == ([], ["prog"])


def test_help_lists_every_parameter_from_the_schema_and_exits_0():
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for name in (
        "topics.input",
        "prefix",
        "heartbeat_hz",
        "model_file",
        "autostart",
        "exit codes: 0 success",
    ):
        assert name in result.stdout
    assert "in [0.1, 100.0]" in result.stdout and result.stderr == ""


def test_an_unknown_parameter_exits_2_with_one_line_naming_the_nearest_name():
    result = run("--ros-args", "-p", "prefx:=a")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "example_node.py: Unknown parameter 'prefx' for node echo_node. Did you mean: 'prefix'?"
    ]


def test_an_invalid_value_exits_2_with_one_line_and_no_traceback():
    result = run("heartbeat_hz:=500.0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "example_node.py: Parameter 'heartbeat_hz' with the value 500.0 must be in [0.1, 100.0]"
    ]
    assert "deprecated" not in result.stderr  # name:=value never reaches rcl as a remap rule


def test_an_unknown_argument_exits_2():
    result = run("--frobnicate")
    assert result.returncode == 2 and "see example_node.py --help" in result.stderr


def test_a_failed_configure_with_autostart_exits_1(tmp_path):
    result = run("autostart:=true", f"model_file:={tmp_path / 'missing.txt'}")
    assert result.returncode == 1
    assert "configure failed: FileNotFoundError" in result.stderr and "Traceback" not in result.stderr


def heard_a_heartbeat(process: subprocess.Popen, context, timeout: float = 60.0) -> bool:
    """Wait until the example node's heartbeat arrives (it started, configured and activated) or it exits.
    A fixed sleep is not enough: on two loaded cores the child can still be importing rclpy after 4 s, and
    a SIGINT then lands in an import as a KeyboardInterrupt, not in the node."""
    from rclpy.node import Node
    from std_msgs.msg import String

    from internvla_ros_common.testing import spin_until

    heard: list[str] = []
    listener = Node("heartbeat_listener", context=context)
    listener.create_subscription(String, "echo_node/output", lambda m: heard.append(m.data), 10)
    try:
        spin_until(listener, lambda: bool(heard) or process.poll() is not None, timeout=timeout)
    finally:
        listener.destroy_node()
    return bool(heard) and process.poll() is None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_shuts_down_cleanly_with_exit_0(signum, context):
    process = subprocess.Popen(
        [*NODE, "autostart:=true", "heartbeat_hz:=20.0", "--ros-args", "--log-level", "echo_node:=debug"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**ENV, "PYTHONFAULTHANDLER": "1"},  # SIGABRT prints every thread's stack
    )
    if not heard_a_heartbeat(process, context):
        process.kill()
        out, err = process.communicate(timeout=10)
        pytest.fail(f"the node never became active (exit {process.returncode}):\n{err[-3000:]}")
    process.send_signal(signum)
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # hung: show where each thread waits
        process.send_signal(signal.SIGABRT)
        out, err = process.communicate(timeout=10)
        pytest.fail(f"no exit 30 s after signal {signum}; thread stacks:\n{err[-6000:]}")
    assert process.returncode == 0, err
    for bad in ("Traceback", "never retrieved", "deprecated"):
        assert bad not in out + err


VARIANTS = Path(__file__).with_name("nodes_for_tests.py")


def start_slow_setup_and_signal(times: int) -> tuple[subprocess.Popen, float, str, str]:
    """Start the slow-setup variant, send SIGINT ``times`` times once its configure runs; (process, seconds
    from the first signal to the exit, stdout, stderr)."""
    process = subprocess.Popen(
        [sys.executable, str(VARIANTS), "slow_setup", "autostart:=true"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert process.stdout.readline().strip() == "setup started"
    start = time.monotonic()
    for _ in range(times):
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
    out, err = process.communicate(timeout=30)
    return process, time.monotonic() - start, out, err


def test_one_ctrl_c_during_configure_lets_it_finish_then_shuts_down_with_exit_0():
    process, seconds, out, err = start_slow_setup_and_signal(1)
    assert process.returncode == 0, err
    assert "setup finished" in out and seconds >= 2.0  # the transition was not cut
    assert "Traceback" not in err and "never retrieved" not in err


def test_a_second_ctrl_c_during_configure_stops_at_once_with_exit_0():
    process, _, out, err = start_slow_setup_and_signal(2)
    assert process.returncode == 0, err
    # the 3 s sleep was cut (its end is never printed; a bound on the seconds would measure the machine's
    # load: 2.7 s beside data generation)
    assert "setup finished" not in out
    assert "Traceback" not in err


def run_variant(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(VARIANTS), *args], capture_output=True, text=True, timeout=60, env=ENV
    )


def test_a_callback_that_raises_stops_the_node_with_exit_1_and_one_traceback():
    result = run_variant("failing_callback", "autostart:=true", "heartbeat_hz:=20.0")
    assert result.returncode == 1
    assert result.stderr.count("Traceback") == 1 and "ValueError: bad heartbeat" in result.stderr
    assert "failing_callback: a callback failed: ValueError: bad heartbeat" in result.stderr
    assert "never retrieved" not in result.stderr


def test_a_cpu_only_torch_asked_for_cuda_is_explained_in_one_line():
    result = run_variant("failing_setup", "autostart:=true")
    assert result.returncode == 1
    assert "device:=cuda but this torch has no CUDA: install the CUDA wheel, see README GPU" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_schema_of_a_node_class_is_found_next_to_its_module():
    from internvla_ros_common.example_node import EchoNode
    from internvla_ros_common.node_main import schema_of

    assert (
        schema_of(EchoNode)
        == Path(sys.modules[EchoNode.__module__].__file__).parent / "params" / "echo_node.yaml"
    )

    class Anonymous:
        def __init__(self, node_name: str) -> None: ...

    assert schema_of(Anonymous) is None
