"""ManagedNode: the lifecycle base every node of the project derives from.

A subclass writes four hooks and nothing about rclpy's transition plumbing:

- ``setup(params)`` (configure): lifecycle publishers (``self.create_lifecycle_publisher``),
  model load, anything that is slow and kept while inactive;
- ``activate()``: subscriptions, timers and services through ``self.managed_subscription(...)``,
  ``self.managed_timer(...)``, ``self.managed_service(...)``; the base destroys them on deactivate;
- ``deactivate()``: stop work in flight (bounded wait), send a stop command; runs before the
  base disables the publishers and destroys the managed entities;
- ``teardown()``: free what ``setup`` made; it must cope with partial state because it also
  runs after a failed setup, on shutdown and on error. The base frees lifecycle publishers.

The base validates the parameters (schema + ``check_params``) on every configure, logs any
exception of a hook once with what to do, and never leaves a half state: a failed configure
tears down and stays unconfigured, a failed activate undoes itself and stays inactive, an
exception in deactivate or cleanup goes through on_error, which tears everything down.

Why entities are handled this way (rclpy pitfalls, 9.x):
- publishers are freed with ``destroy_lifecycle_publisher``; ``destroy_publisher`` leaves the
  publisher registered as a managed entity (kept alive, enabled/disabled forever after);
- subscriptions and timers may be destroyed while an executor waits on them: rclpy defers the
  rcl destruction until the wait ends and skips handles gone while it builds a wait set;
- action servers may not: their take/execute path uses the rcl pointer outside that guard and
  dies with ``RCLError: action server pointer is invalid`` after some cycles. Create them once
  in ``__init__`` with ``managed_action_server`` (goals are rejected unless the node is active)
  and never destroy them before ``destroy_node``.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rclpy.action import ActionServer, GoalResponse
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.lifecycle.publisher import LifecyclePublisher

from internvla_ros_common.callback_gate import CallbackGate
from internvla_ros_common.errors import one_line
from internvla_ros_common.params import ParameterSchemaError, ParamListener, Params
from internvla_ros_common.schema import AUTOSTART, NodeSchema, load_schema

CALLBACK_DRAIN_TIMEOUT = 5.0  # [s] wait for managed callbacks in flight when deactivating

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE
ERROR = TransitionCallbackReturn.ERROR


class ManagedNode(LifecycleNode):
    """LifecycleNode with a parameter schema, four hooks and entities scoped to the active state."""

    def __init__(self, node_name: str, schema_path: str | Path | NodeSchema, **kwargs: Any) -> None:
        # every -p override becomes visible, so the listener can name unknown ones (public route)
        kwargs.setdefault("automatically_declare_parameters_from_overrides", True)
        super().__init__(node_name, **kwargs)
        try:
            schema = schema_path if isinstance(schema_path, NodeSchema) else load_schema(schema_path)
            self.schema = schema.with_parameter(AUTOSTART)
            self.param_listener = ParamListener(self, self.schema)
        except BaseException:
            # no half-built node (and no leaked rcl handles) on a bad -p; rclpy's destroy_node, not a
            # subclass override: the subclass's own state does not exist yet
            LifecycleNode.destroy_node(self)
            raise
        self.params: Params | None = None
        self.lifecycle_state = "unconfigured"
        self._lifecycle_publishers: list[LifecyclePublisher] = []
        self._active_entities: list[tuple[Callable[[Any], bool], Any]] = []
        self._callback_groups: set[Any] = {self.default_callback_group}
        self._gate = CallbackGate()

    # ------------------------------------------------------------------------------- the hooks
    def setup(self, params: Params) -> None:
        """Configure: create lifecycle publishers, load models. Raise to fail the transition."""

    def teardown(self) -> None:
        """Free what setup made; must cope with partial state (runs after a failed setup too)."""

    def activate(self) -> None:
        """Start work: managed subscriptions, timers, services. Raise to stay inactive."""

    def deactivate(self) -> None:
        """Stop work in flight and send a stop command; managed entities are destroyed after."""

    def check_params(self, params: Params) -> list[str]:
        """Cross-parameter rules of the node: one message per failure (empty when fine)."""
        return []

    # ------------------------------------------------------------------------------- entities
    @property
    def is_active(self) -> bool:
        return self.lifecycle_state == "active"

    def create_lifecycle_publisher(self, *args: Any, **kwargs: Any) -> LifecyclePublisher:
        """As rclpy's, and freed by the base on cleanup/shutdown/error. Enabled at once when created
        while active."""
        publisher = super().create_lifecycle_publisher(*args, **kwargs)
        self._lifecycle_publishers.append(self._track_groups(publisher))
        if self.is_active:
            publisher.on_activate(LifecycleState(state_id=0, label="active"))
        return publisher

    def managed_subscription(self, *args: Any, **kwargs: Any):
        """create_subscription whose subscription the base destroys on deactivate (the callback
        is skipped once deactivation began, and waited for when already running)."""
        args, kwargs = self._gated(2, args, kwargs)
        subscription = self.create_subscription(*args, **kwargs)
        self._active_entities.append((self.destroy_subscription, self._track_groups(subscription)))
        return subscription

    def managed_timer(self, *args: Any, **kwargs: Any):
        """create_timer whose timer the base destroys on deactivate (callback gated as above)."""
        args, kwargs = self._gated(1, args, kwargs)
        timer = self.create_timer(*args, **kwargs)
        self._active_entities.append((self.destroy_timer, self._track_groups(timer)))
        return timer

    def managed_service(self, *args: Any, **kwargs: Any):
        """create_service whose service the base destroys on deactivate (a request in flight is
        answered and waited for)."""
        args, kwargs = self._gated(2, args, kwargs, skip_when_closed=False)
        service = self.create_service(*args, **kwargs)
        self._active_entities.append((self.destroy_service, self._track_groups(service)))
        return service

    def managed_action_server(
        self,
        action_type: Any,
        action_name: str,
        execute_callback: Callable[..., Any],
        goal_callback: Callable[[Any], GoalResponse] | None = None,
        **kwargs: Any,
    ) -> ActionServer:
        """An action server made once (call it in ``__init__``) that rejects goals unless the node is
        active. Never destroyed before destroy_node: see the module docstring for why."""

        def accept_only_when_active(goal_request: Any) -> GoalResponse:
            if not self.is_active:
                self.get_logger().warning(
                    f"goal on {action_name} rejected: node is {self.lifecycle_state}, activate it first"
                )
                return GoalResponse.REJECT
            return goal_callback(goal_request) if goal_callback else GoalResponse.ACCEPT

        return ActionServer(
            self, action_type, action_name, execute_callback, goal_callback=accept_only_when_active, **kwargs
        )

    def _track_groups(self, entity: Any) -> Any:
        for item in (entity, *getattr(entity, "event_handlers", ())):
            group = getattr(item, "callback_group", None)
            if group is not None:
                self._callback_groups.add(group)
        return entity

    def _purge_dead_callback_refs(self) -> None:
        """rclpy's CallbackGroup keeps a weakref per entity ever added and never drops it: about
        1 KB per created subscription/timer/publisher, forever. Dead refs (the entity is gone, so
        no executor can still ask about it) are removed here; live ones must stay, because the
        executor asserts membership while it may still hold a just-destroyed entity."""
        for group in self._callback_groups:
            for ref in [r for r in list(group.entities) if r() is None]:
                group.entities.discard(ref)

    def _gated(
        self, position: int, args: tuple[Any, ...], kwargs: dict[str, Any], skip_when_closed: bool = True
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The create_* arguments with the callback (positional ``position`` or keyword) gated."""
        if "callback" in kwargs:
            kwargs = {**kwargs, "callback": self._gate.wrap(kwargs["callback"], skip_when_closed)}
        else:
            args = (
                *args[:position],
                self._gate.wrap(args[position], skip_when_closed),
                *args[position + 1 :],
            )
        return args, kwargs

    def _destroy_active_entities(self) -> None:
        """Close the gate, destroy the managed entities, wait for callbacks still running."""
        self._gate.close()
        while self._active_entities:
            destroy, entity = self._active_entities.pop()
            destroy(entity)
        if not self._gate.wait_idle(CALLBACK_DRAIN_TIMEOUT):
            self.get_logger().warning(
                f"{self._gate.in_flight} callback(s) still running {CALLBACK_DRAIN_TIMEOUT:.0f} s after "
                "deactivation began: they may use what cleanup frees; make long callbacks check is_active"
            )
        self._purge_dead_callback_refs()

    def _destroy_lifecycle_publishers(self) -> None:
        while self._lifecycle_publishers:
            self.destroy_lifecycle_publisher(self._lifecycle_publishers.pop())
        self._purge_dead_callback_refs()

    # ---------------------------------------------------------------------------- error reports
    def _report(self, hook: str, exc: BaseException, fix: str) -> None:
        """One log line block per failure: what failed, why, what to do; the traceback at debug."""
        self.get_logger().error(f"{hook} failed: {one_line(exc)}. {fix}")
        self.get_logger().debug("".join(traceback.format_exception(exc)))

    def _safe_teardown(self) -> bool:
        ok = True
        try:
            self.teardown()
        except Exception as exc:
            self._report("teardown", exc, "Resources may be left allocated; restart the node.")
            ok = False
        self._destroy_lifecycle_publishers()
        return ok

    # ------------------------------------------------------------------------------ transitions
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            params = self.param_listener.refresh()
            problems = self.check_params(params)
            if problems:
                raise ParameterSchemaError(problems)
            self.params = params
            self.setup(params)
        except ParameterSchemaError as exc:
            for line in exc.messages:
                self.get_logger().error(line)
            self.get_logger().error(
                "configure failed: fix the parameters above (-p name:=value or the params YAML)"
            )
            self._safe_teardown()
            return FAILURE
        except Exception as exc:
            self._report(
                "configure", exc, "Fix the cause above and configure again; the node stays unconfigured."
            )
            self._safe_teardown()
            return FAILURE
        result = super().on_configure(state)
        self.lifecycle_state = "inactive" if result == SUCCESS else "unconfigured"
        return result

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables lifecycle publishers first: callbacks may publish
        if result != SUCCESS:
            return result
        self.lifecycle_state = "active"  # managed_action_server accepts goals from here on
        self._gate.open()
        try:
            self.activate()
        except Exception as exc:
            self._report("activate", exc, "The node stays inactive; fix the cause and activate again.")
            self.lifecycle_state = "inactive"
            self._destroy_active_entities()
            super().on_deactivate(state)
            return FAILURE
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.lifecycle_state = "inactive"  # no new goals while stopping
        ok = True
        try:
            self.deactivate()
        except Exception as exc:
            self._report(
                "deactivate", exc, "Work may not have stopped cleanly; the node tears down (on_error)."
            )
            ok = False
        self._destroy_active_entities()
        super().on_deactivate(state)
        return SUCCESS if ok else ERROR

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        ok = self._safe_teardown()
        self.params = None
        super().on_cleanup(state)
        self.lifecycle_state = "unconfigured"
        return SUCCESS if ok else ERROR

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if state.label == "active":
            self.lifecycle_state = "inactive"  # no new goals while stopping
            try:
                self.deactivate()
            except Exception as exc:
                self._report("deactivate (shutdown)", exc, "Check that the hardware stopped.")
            self._destroy_active_entities()
            super().on_deactivate(state)
        if state.label in ("active", "inactive"):
            self._safe_teardown()
        self.params = None
        super().on_shutdown(state)
        self.lifecycle_state = "finalized"
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_active_entities()
        ok = self._safe_teardown()
        self.params = None
        super().on_error(state)
        self.lifecycle_state = "unconfigured" if ok else "finalized"
        if not ok:
            self.get_logger().error("error recovery failed: the node is finalized; restart it")
        return SUCCESS if ok else FAILURE

    def force_teardown(self) -> None:
        """Free everything without a transition: for a transition cut by Ctrl-C, when rcl refuses
        the shutdown transition. The node counts as finalized afterwards."""
        self._destroy_active_entities()
        if self.lifecycle_state != "unconfigured" or self.params is not None:
            self._safe_teardown()
        self._destroy_lifecycle_publishers()
        self.lifecycle_state = "finalized"

    def destroy_node(self) -> None:
        """Free everything, also when the node was never shut down (destroy_node skips on_shutdown)."""
        if getattr(self, "lifecycle_state", "finalized") in ("active", "inactive"):
            self.trigger_shutdown()
        super().destroy_node()
