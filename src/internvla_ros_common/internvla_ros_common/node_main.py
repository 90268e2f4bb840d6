"""The one ``main()`` of every node: ``main = main_for(GroundingNode)`` in the node module.

What it does, in order:
- splits argv itself: the ``--ros-args ... [--]`` parts go to ``rclpy.init``, the rest is ours.
  rclpy.init (and rclpy.utilities.remove_ros_args) hand the *whole* argv to rcl, which reads
  every ``name:=value`` outside ``--ros-args`` as an old-style remap rule and prints "Found remap
  rule ... This syntax is deprecated". So rcl never sees our part; ``name:=value`` given without
  ``--ros-args`` is taken as the parameter ``-p name:=value`` (as ``ros2 launch`` arguments read);
- ``--help`` prints the node's parameters from its schema (no ROS started), exit 0;
- an unknown or invalid parameter prints one line per problem on stderr, exit 2; any other
  unknown argument, exit 2;
- ``autostart:=true``: configure then activate; a failed transition exits 1;
- Ctrl-C or SIGTERM: trigger_shutdown (the node's deactivate/teardown run), exit 0. The signal only
  sets a flag that the spin loop reads between two waits: an exception raised asynchronously inside
  rclpy (while it holds an executor or handle lock) could leave the shutdown waiting on that lock. A
  second Ctrl-C during a long transition (a model load) stops at once.

Exit codes: 0 success, 1 failure (start or transition), 2 usage.
"""

from __future__ import annotations

import inspect
import signal
import sys
import textwrap
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def split_ros_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(ROS arguments, our arguments) of a command line; argv[0] stays with ours.

    ROS arguments are the tokens after each ``--ros-args`` up to ``--`` or the end (rcl's rule);
    ``name:=value`` among our tokens becomes ``-p name:=value``."""
    ros: list[str] = []
    own: list[str] = []
    in_ros = False
    for token in argv:
        if token == "--ros-args":
            in_ros = True
        elif in_ros and token == "--":
            in_ros = False
        elif in_ros:
            ros.append(token)
        elif ":=" in token and not token.startswith("-") and own:
            if own[-1] in ("-p", "--param"):  # `node -p x:=1`, forgetting --ros-args: same meaning
                own.pop()
            ros += ["-p", token]
        else:
            own.append(token)
    return ros, own


def schema_of(node_class: type) -> Path | None:
    """The schema of a node class: its ``SCHEMA_PATH`` attribute, else
    ``<module dir>/params/<default node_name>.yaml`` (the project's layout)."""
    explicit = getattr(node_class, "SCHEMA_PATH", None)
    if explicit:
        return Path(explicit)
    try:
        node_name = inspect.signature(node_class.__init__).parameters["node_name"].default
        module_file = inspect.getfile(node_class)
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(node_name, str):
        return None
    path = Path(module_file).parent / "params" / f"{node_name}.yaml"
    return path if path.is_file() else None


def help_text(prog: str, schema_path: Path | None, summary: str = "") -> str:
    """--help: usage, the node's parameters from its schema, ROS arguments and exit codes."""
    from internvla_ros_common.schema import AUTOSTART, format_value, load_schema

    lines = [f"usage: {prog} [-h] [NAME:=VALUE ...] [--ros-args -p NAME:=VALUE -r FROM:=TO ...]", ""]
    if summary:
        lines += [summary, ""]
    lines.append("parameters (NAME:=VALUE or --ros-args -p NAME:=VALUE; YAML values):")
    specs = []
    if schema_path is not None:
        schema = load_schema(schema_path).with_parameter(AUTOSTART)
        specs = list(schema.parameters.values())
    for spec in specs:
        default = "required" if spec.required else f"default {format_value(spec.default)}"
        lines.append(f"  {spec.name} ({spec.type}, {default})")
        text = spec.description + (f" [{spec.constraints_text()}]" if spec.constraints_text() else "")
        lines += textwrap.wrap(text, width=96, initial_indent="      ", subsequent_indent="      ")
    if not specs:
        lines.append("  (no schema found)")
    lines += [
        "",
        "ROS arguments after --ros-args: -p NAME:=VALUE, --params-file FILE, -r FROM:=TO, --log-level LEVEL.",
        "Without autostart:=true the node waits unconfigured for its lifecycle manager",
        "(ros2 lifecycle set <node> configure / activate, or the launch file).",
        "exit codes: 0 success, 1 failure (start or a lifecycle transition), 2 usage (unknown or invalid argument)",
    ]
    return "\n".join(lines) + "\n"


class StopRequest:
    """Signal handler state: the first SIGINT/SIGTERM asks to stop, a second one interrupts."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt  # asked twice: stop now, even inside a transition
        self.requested = True


def _first_doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def run_node(
    node_factory: Callable[[], Any],
    args: Sequence[str] | None = None,
    *,
    schema_path: str | Path | None = None,
    summary: str = "",
    threads: int = 4,
) -> int:
    """Run one ManagedNode as a process; returns the exit code (see the module docstring)."""
    argv = list(sys.argv if args is None else args)
    ros_args, own = split_ros_args(argv)
    prog = Path(own[0]).name if own else "node"
    rest = own[1:]
    if any(a in ("-h", "--help") for a in rest):
        from internvla_ros_common.schema import SchemaError

        try:
            sys.stdout.write(help_text(prog, Path(schema_path) if schema_path else None, summary))
        except SchemaError as exc:
            print(f"{prog}: broken parameter schema: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        return EXIT_OK
    if rest:
        print(f"{prog}: unknown argument(s) {' '.join(rest)}; see {prog} --help", file=sys.stderr)
        return EXIT_USAGE

    import rclpy
    from rclpy.exceptions import InvalidHandle
    from rclpy.signals import SignalHandlerOptions

    from internvla_ros_common.errors import one_line
    from internvla_ros_common.executors import DrainingExecutor
    from internvla_ros_common.lifecycle import SUCCESS
    from internvla_ros_common.params import ParameterSchemaError

    try:
        # no rclpy signal handlers: they would shut the context down before the node's own
        # shutdown transition could publish its stop command
        rclpy.init(
            args=[argv[0] if argv else prog, "--ros-args", *ros_args],
            signal_handler_options=SignalHandlerOptions.NO,
        )
    except Exception as exc:  # rcl refuses malformed ROS arguments
        print(f"{prog}: invalid ROS arguments: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    stop = StopRequest()
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    node = executor = None
    try:
        try:
            node = node_factory()
        except ParameterSchemaError as exc:
            for line in exc.messages:
                print(f"{prog}: {line}", file=sys.stderr)
            return EXIT_USAGE
        except Exception as exc:
            print(f"{prog}: cannot start: {one_line(exc)}", file=sys.stderr)
            return EXIT_FAILURE
        executor = DrainingExecutor(num_threads=threads)
        executor.add_node(node)
        if node.param_listener.get_params().autostart:
            for name in ("configure", "activate"):
                if stop.requested:
                    break
                if getattr(node, f"trigger_{name}")() != SUCCESS:
                    print(f"{prog}: {name} failed (see the log above)", file=sys.stderr)
                    return EXIT_FAILURE
        while rclpy.ok() and node.lifecycle_state != "finalized" and not stop.requested:
            try:
                executor.spin_once(timeout_sec=0.1)
            except InvalidHandle:  # an entity destroyed while rclpy built its wait set: harmless
                continue
            except Exception as exc:  # a callback raised: a bug; say it once, stop the node cleanly
                node.get_logger().error(
                    f"a callback failed, shutting down:\n{''.join(traceback.format_exception(exc))}"
                )
                print(f"{prog}: a callback failed: {one_line(exc)}", file=sys.stderr)
                _shutdown(node)
                return EXIT_FAILURE
        if stop.requested:
            executor.drain()  # callbacks already handed out finish before the shutdown destroys entities
            _shutdown(node)
        return EXIT_OK
    except KeyboardInterrupt:
        if node is not None:
            _shutdown(node)
        return EXIT_OK
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


def _shutdown(node: Any) -> None:
    """The shutdown transition, unless a transition was cut in the middle (then only destroy)."""
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

    if node.lifecycle_state == "finalized":
        return
    try:
        node.trigger_shutdown()
    except _rclpy.RCLError:  # Ctrl-C inside a transition: rcl refuses a new one
        node.force_teardown()


def main_for(node_class: type, **options: Any) -> Callable[[Sequence[str] | None], int]:
    """A console_scripts entry point for a ManagedNode class: ``main = main_for(MyNode)``."""

    def main(args: Sequence[str] | None = None) -> int:
        code = run_node(
            node_class,
            args,
            schema_path=options.get("schema_path") or schema_of(node_class),
            summary=options.get("summary") or _first_doc_line(node_class),
            threads=options.get("threads", 4),
        )
        sys.exit(code)

    main.__doc__ = f"Run {node_class.__name__} (exit codes 0 success, 1 failure, 2 usage)."
    return main
