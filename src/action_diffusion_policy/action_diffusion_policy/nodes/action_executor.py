"""Action executor node: a stream of ActionChunks -> one command per control tick per arm.

Thin adapter over :class:`~action_diffusion_policy.runtime.executor.ExecutorCore`
(ensembling/alignment, timeout hold, position and step limits).

Subscribes:
  ``/policy/action_chunk``         action_diffusion_msgs/ActionChunk (remappable)
  each arm's ``joint_state_topic`` sensor_msgs/JointState (``state_source: joint_states``), or
  ``unified_state_topic``          action_diffusion_msgs/UnifiedState
                                   (``state_source: unified_state``)
  The measured state starts the hold command and the step limiter; with joint states it is
  taken only while every arm has sent one within ``stale_timeout``.
Publishes:
  each arm's ``command_outputs`` (the driver's own interfaces: Float64MultiArray, JointState,
  JointTrajectory with one point or the streamed rest of the chunk, Interbotix
  JointGroupCommand / JointSingleCommand; a control_msgs GripperCommand action goal when the
  gripper target moves), every tick while enabled, the measured state is known and the driver
  is ready; the held last command while no chunk covers "now" or the newest chunk is older than
  ``chunk_timeout``. ``enable_topic`` (std_msgs/Bool true) while enabled.
  Before any command, each output must have a subscriber (an action server), its ros2_control
  controller must be active and claim its joints, and every gripper must read inside its
  ``gripper_range``; otherwise nothing is sent, the log and ``/diagnostics`` (``driver``)
  say which topic and what the driver expects, and ``~/enable`` is refused.
  ``/diagnostics`` diagnostic_msgs/DiagnosticArray, 1 Hz.
  ``heartbeat_topic``               std_msgs/Bool, when ``heartbeat_timeout`` > 0: the deadman;
                                   ``true`` messages keep it alive, silence or ``false`` for
                                   longer than the timeout holds the last command
  ``estop_topic``                  std_msgs/Bool: ``true`` stops all commands and latches;
                                   after ``false`` (released) ``~/enable`` resumes
Services:
  ``~/enable`` std_srvs/SetBool; disabled, it commands nothing. Refused while the e-stop is
               latched.
  ``~/reset``  std_srvs/Trigger, call it after resetting the scene: drops every chunk
               (also those observed before the call and still in flight) and restarts from
               the next measured state.
Parameters: ``embodiment`` (name or YAML path), ``strategy`` (temporal_ensembling |
receding_horizon | rtc: the newest chunk from its arrival), ``ensembling_k``,
``receding_steps``, ``chunk_timeout`` (s), ``rate`` (Hz, 0 = the embodiment's
control_frequency), ``enabled_on_start``, ``state_source``,
``unified_state_topic``, ``max_chunks``, ``stale_timeout`` (s), ``future_tolerance`` (s: a
chunk stamped further ahead of this node's clock is refused, counted as ``rejected_future``),
``start_ramp_s`` and ``start_speed_fraction`` (the first motion after enabling, a reset or a
lost heartbeat starts at that fraction of the velocity limits, reaching all of it after
``start_ramp_s``; 0 = no ramp), ``heartbeat_topic``, ``heartbeat_timeout`` (s; 0 = no heartbeat
needed), ``estop_topic``, ``require_driver`` (false: skip the driver checks), ``stream_points``
(points of a streamed JointTrajectory, >= 1), ``tick_clock`` (``thread``: a dedicated thread on
absolute monotonic deadlines, under SCHED_FIFO at ``realtime_priority`` where the process may;
``ros_timer``: an rclpy timer on the node clock, used whenever ``use_sim_time`` is set).
Real bringups start disabled, ramped, with the e-stop on ``/estop`` (``real.yaml``).
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import SetBool, Trigger

from action_diffusion_msgs.msg import ActionChunk, UnifiedState
from action_diffusion_policy.runtime import CHUNK_TOPIC
from action_diffusion_policy.runtime import command_outputs as co
from action_diffusion_policy.runtime import conversions as cv
from action_diffusion_policy.runtime.ensembler import EnsemblerConfig
from action_diffusion_policy.runtime.executor import ExecutorCore
from action_diffusion_policy.runtime.ticker import RT_HINT, Ticker
from unified_action_space.conversions import joint_state_from_msg, unified_state_from_msg
from unified_action_space.nodes.joint_state_inputs import subscribe_joint_states
from unified_action_space.nodes.node_main import run_node
from unified_action_space.state_assembler import StateAssembler, describe_problems

STATE_SOURCES = ("joint_states", "unified_state")


def load_embodiment(name_or_path: str):
    from unified_action_space import load_embodiment as load

    return load(name_or_path, kinematics=False)  # commands never need FK


TICK_CLOCKS = ("thread", "ros_timer")
GIL_SWITCH_INTERVAL_S = 2e-4


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class ActionExecutorNode(Node):
    def __init__(self, **kwargs):
        super().__init__("action_executor", **kwargs)
        p = self.declare_parameter
        p("embodiment", "aloha_sim")
        p("strategy", "temporal_ensembling")
        p("ensembling_k", 0.01)
        p("receding_steps", 8)
        p("chunk_timeout", 0.5)
        p("rate", 0.0)
        p("enabled_on_start", True)
        p("state_source", "joint_states")
        p("unified_state_topic", "/unified_state")
        p("max_chunks", 32)
        p("stale_timeout", 0.5)  # s without an arm's joint state before it counts as stale
        p("future_tolerance", 0.5)  # s a chunk's stamp may be ahead of this node's clock
        p("start_ramp_s", 0.0)
        p("start_speed_fraction", 0.1)
        p("heartbeat_topic", "/deadman")
        p("heartbeat_timeout", 0.0)
        p("estop_topic", "/estop")
        p("require_driver", True)
        p("stream_points", 32)
        p("tick_clock", "thread")
        p("realtime_priority", 80)  # SCHED_FIFO priority of the tick thread; 0 = normal
        get = self._param
        # A woken tick thread waits for the GIL until the spin thread yields it: at CPython's
        # default 5 ms switch interval that alone is 5 ms of jitter.
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
        # Callbacks (spin thread) and ticks (their own thread) share the core.
        self._lock = threading.RLock()
        self._ticker: Ticker | None = None

        self.embodiment = load_embodiment(get("embodiment"))
        emb = self.embodiment
        rate = get("rate") or emb.control_frequency
        state_source = get("state_source")
        if state_source not in STATE_SOURCES:
            raise ValueError(f"parameter state_source={state_source!r}: use one of {STATE_SOURCES}")
        limits = np.asarray(emb.position_limits_unified, dtype=np.float64)
        self.core = ExecutorCore(
            emb.action_slots,
            lower=limits[:, 0],
            upper=limits[:, 1],
            max_velocity=emb.max_velocity_unified,
            rate_hz=rate,
            ensembler_config=EnsemblerConfig(
                strategy=get("strategy"),
                ensembling_k=get("ensembling_k"),
                receding_steps=get("receding_steps"),
                max_chunks=get("max_chunks"),
            ),
            chunk_timeout=get("chunk_timeout"),
            enabled=get("enabled_on_start"),
            future_tolerance=get("future_tolerance"),
            start_ramp_s=get("start_ramp_s"),
            start_speed_fraction=get("start_speed_fraction"),
            heartbeat_timeout=get("heartbeat_timeout"),
        )
        self.rate = float(rate)
        self.dt = 1.0 / self.rate

        self.stream_points = int(get("stream_points"))
        if self.stream_points < 1:
            raise ValueError(f"parameter stream_points={self.stream_points}: must be >= 1")
        self.step_s = 1.0 / emb.control_frequency  # the chunks' step period
        self._outputs = _DriverOutputs(self, emb, bool(get("require_driver")))
        self.assembler = StateAssembler(emb, get("stale_timeout"), fk=False)  # no FK needed
        if state_source == "joint_states":
            subscribe_joint_states(self, emb, self._on_joint_state)
        else:
            self.create_subscription(
                UnifiedState, get("unified_state_topic"), self._on_unified_state,
                qos_profile_sensor_data,
            )  # fmt: skip
        self.create_subscription(ActionChunk, CHUNK_TOPIC, self._on_chunk, QoSProfile(depth=10))
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if self.core.heartbeat_timeout > 0:
            self.create_subscription(Bool, get("heartbeat_topic"), self._on_heartbeat,
                                     QoSProfile(depth=10))  # fmt: skip
        self._estop_topic = get("estop_topic")
        if self._estop_topic:
            self.create_subscription(Bool, self._estop_topic, self._on_estop, QoSProfile(depth=10))
        self.create_service(SetBool, "~/enable", self._on_enable)
        self.create_service(Trigger, "~/reset", self._on_reset)

        self._tick_wall: deque[float] = deque(maxlen=int(self.rate * 5) + 2)
        self._sent_wall: deque[float] = deque(maxlen=int(self.rate * 5) + 2)  # commands out
        self._last_status = None
        self._n_published = 0
        self._moving = False  # a command went out since the last enable or reset
        self._n_hold_ticks = 0
        self._state_errors = 0
        self._stale_states = 0
        tick_clock = get("tick_clock")
        if tick_clock not in TICK_CLOCKS:
            raise ValueError(f"parameter tick_clock={tick_clock!r}: use one of {TICK_CLOCKS}")
        if get("use_sim_time"):
            tick_clock = "ros_timer"  # simulated time advances only through /clock
        self.tick_clock = tick_clock
        if tick_clock == "ros_timer":
            self.create_timer(self.dt, self._tick)  # node clock: ROS time, sim time when set
            scheduling = "rclpy timer on the node clock"
        else:
            self._ticker = Ticker(self.dt, self._tick_from_thread, name="executor_tick",
                                  realtime_priority=int(get("realtime_priority")))
            scheduling = self._ticker.start()
            if scheduling == RT_HINT:
                self.get_logger().warn(f"tick thread: {scheduling}")
            scheduling = f"tick thread, {scheduling}"
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f"executing {emb.name} ({len(emb.action_slots)} slots) at {self.rate:g} Hz "
            f"({scheduling}), strategy {self.core.ensembler.config.strategy}, "
            f"{'enabled' if self.core.enabled else 'disabled'}; chunks on {CHUNK_TOPIC}"
        )

    def _param(self, name: str):
        return self.get_parameter(name).value

    def halt(self) -> None:
        """Stop ticking and command nothing more (a tick in progress finishes first)."""
        if self._ticker is not None:
            self._ticker.stop()
        with self._lock:
            self.core.set_enabled(False)

    def _tick_from_thread(self) -> None:
        try:
            self._tick()
        except Exception as exc:  # this tick commands nothing; the next one tries again
            self.get_logger().error(f"tick failed: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=2.0)  # fmt: skip
            raise

    # --- inputs ---------------------------------------------------------------------------
    @_locked
    def _on_joint_state(self, arm: str, msg: JointState, topic: str | None = None) -> None:
        try:
            js = joint_state_from_msg(msg)
        except ValueError as exc:  # positions and names of different lengths
            self._state_errors += 1
            self.get_logger().warn(f"{arm} joint state rejected: {exc}", throttle_duration_sec=2.0)
            return
        stamp, names, positions = js.stamp, js.names, js.positions
        now_ns = self.get_clock().now().nanoseconds
        self.assembler.update(arm, names, positions, None, stamp, now_ns, topic)
        if not self.assembler.complete:
            return
        try:
            state, problems = self.assembler.assemble(now_ns)
        except ValueError as exc:  # JointStateError: missing joint, non-finite value
            self._state_errors += 1
            self.get_logger().warn(f"joint state rejected: {exc}", throttle_duration_sec=2.0)
            return
        if problems:  # an arm went silent: its last state is no measurement of the robot now
            self._stale_states += 1
            self.get_logger().warn(
                f"measured state not updated: {describe_problems(problems)}",
                throttle_duration_sec=2.0,
            )
            return
        self._set_measured(state.values[self.embodiment.action_slots])

    def _set_measured(self, values) -> None:
        self._outputs.check_grippers(values, moving=self._moving)
        self.core.set_measured(values)

    @_locked
    def _on_unified_state(self, msg: UnifiedState) -> None:
        try:
            values, mask = unified_state_from_msg(msg)[:2]
        except ValueError as exc:  # wrong sizes: Jazzy does not check them
            self._state_errors += 1
            self.get_logger().warn(f"unified state rejected: {exc}", throttle_duration_sec=2.0)
            return
        slots = self.embodiment.action_slots
        if not mask[slots].all():
            self.get_logger().warn(
                "unified state lacks commanded slots "
                f"{np.asarray(slots)[~mask[slots]].tolist()}; ignored",
                throttle_duration_sec=2.0,
            )
            return
        self._set_measured(values[slots])

    @_locked
    def _on_chunk(self, msg: ActionChunk) -> None:
        try:
            chunk = cv.chunk_from_msg(msg)
        except ValueError as exc:
            self.core.ensembler.counters["rejected_malformed"] += 1
            self.get_logger().warn(f"chunk rejected: {exc}", throttle_duration_sec=2.0)
            return
        now = self.get_clock().now().nanoseconds * 1e-9
        result = self.core.add_chunk(
            chunk.stamp, chunk.step_period, chunk.slot_indices, chunk.actions, now_s=now
        )
        if result == "rejected_future":
            self.get_logger().warn(
                f"chunk {chunk.sequence} from {chunk.checkpoint_id or '?'} is stamped "
                f"{chunk.stamp - now:.3f} s ahead of this node's clock (more than "
                f"future_tolerance {self.core.future_tolerance:g} s): refused; are the "
                "policy's and the executor's clocks in sync?",
                throttle_duration_sec=2.0,
            )
        elif result == "rejected_before_reset":
            self.get_logger().info(
                f"chunk {chunk.sequence} observed before the last reset; dropped",
                throttle_duration_sec=2.0,
            )
        elif result != "accepted":
            self.get_logger().warn(
                f"chunk {chunk.sequence} from {chunk.checkpoint_id or '?'} {result} "
                f"(chunk slots {chunk.slot_indices.tolist()}, embodiment {self.embodiment.name} "
                f"commands {np.asarray(self.embodiment.action_slots).tolist()})",
                throttle_duration_sec=2.0,
            )

    @_locked
    def _on_enable(self, request, response):
        problems = self._outputs.problems(force=True) if request.data else []
        if problems:
            response.success = False
            response.message = "refused: the driver is not ready: " + "; ".join(problems)
            self.get_logger().error(response.message)
            return response
        was_enabled = self.core.enabled
        response.success = self.core.set_enabled(request.data)
        if response.success and request.data and not was_enabled:
            self._moving = False  # the gripper check again before the first motion
        if not response.success:
            response.message = (
                f"refused: the e-stop is latched; release it (publish false on "
                f"{self._estop_topic}), then enable"
            )
            self.get_logger().error(response.message)
            return response
        response.message = "enabled" if request.data else "disabled: commanding nothing"
        if request.data and self.core.start_ramp_s > 0:
            response.message += (
                f" (starting at {self.core.start_speed_fraction:.0%} of the velocity limits, "
                f"full speed after {self.core.start_ramp_s:g} s)"
            )
        self.get_logger().info(response.message)
        if request.data:
            self._outputs.publish_enable()
        return response

    @_locked
    def _on_heartbeat(self, msg: Bool) -> None:
        if msg.data:
            self.core.heartbeat(self.get_clock().now().nanoseconds * 1e-9)

    @_locked
    def _on_estop(self, msg: Bool) -> None:
        if msg.data and not self.core.estopped:
            self.core.estop()
            self.get_logger().error(
                f"E-STOP on {self._estop_topic}: commanding nothing until it is released "
                "(false) and ~/enable is called"
            )
        elif not msg.data and self.core.estopped:
            self.core.release_estop()
            self.get_logger().warn("e-stop released; still disabled until ~/enable")

    @_locked
    def _on_reset(self, request, response):
        now = self.get_clock().now().nanoseconds * 1e-9
        self.core.new_episode(now)
        self.assembler.clear()  # the next complete measured state restarts the commands
        self._moving = False
        response.success = True
        response.message = f"chunks cleared at t={now:.3f} s; restarting from the measured state"
        self.get_logger().info(response.message)
        return response

    # --- the control tick -----------------------------------------------------------------
    @_locked
    def _tick(self) -> None:
        self._tick_wall.append(time.monotonic())
        now = self.get_clock().now().nanoseconds * 1e-9
        problems = self._outputs.problems()  # checked while disabled too, for diagnostics
        if problems and self.core.enabled:  # nothing goes out; once the driver is back, start
            # again from where the arm is
            self.core.restart_from_measured()
            self.get_logger().error(
                "not commanding, the driver is not ready: " + "; ".join(problems),
                throttle_duration_sec=5.0,
            )
            return
        command, status = self.core.tick(now)
        self._last_status = status
        if command is None:
            if status.enabled:
                self.get_logger().warn(
                    f"not commanding: {status.hold_reason} (waiting for the robot's joint state)",
                    throttle_duration_sec=5.0,
                )
            return
        if status.holding:
            self._n_hold_ticks += 1
            self.get_logger().warn(
                f"holding the last command: {status.hold_reason} for "
                f"{status.hold_duration:.2f} s (newest chunk {status.chunk_age:.2f} s old)",
                throttle_duration_sec=2.0,
            )
        trajectories = None
        if self._outputs.streaming and self.stream_points > 1:
            rows = self.core.preview(now, command, status, self.stream_points, self.step_s)
            trajectories = self.embodiment.commands_from_actions(rows, self.core.slot_indices)
        commands = self.embodiment.commands_from_actions(command, self.core.slot_indices)
        self._outputs.send(commands, now, self.dt, trajectories, self.step_s)
        self._sent_wall.append(time.monotonic())
        self._n_published += 1
        self._moving = True

    def _tick_timing(self) -> dict[str, str]:
        """Command timing over the last 5 s: how far apart consecutive commands left this node
        against the period (send_dev: the wake-up, the tick's own work and any wait for the
        callbacks, together) and, with the tick thread, its wake-up lateness."""
        out = {}
        sent = np.diff(np.asarray(self._sent_wall))
        if sent.size > 2:
            dev = np.abs(sent[sent < 1.5 * self.dt] - self.dt) * 1e3  # not across holds/gaps
            if dev.size:
                for q, name in ((50, "p50"), (99, "p99")):
                    out[f"tick_send_dev_{name}_ms"] = f"{np.percentile(dev, q):.4f}"
                out["tick_send_dev_max_ms"] = f"{dev.max():.4f}"
        if self._ticker is None:
            return out
        stats = self._ticker.stats()
        out.update({"tick_scheduling": self._ticker.scheduling,
                    "tick_missed_deadlines": str(stats["missed"]),
                    "tick_errors": str(self._ticker.errors)})
        for key in ("late_p50_ms", "late_p99_ms", "late_max_ms"):
            if key in stats:
                out[f"tick_{key}"] = f"{stats[key]:.4f}"
        return out

    @_locked
    def _publish_diagnostics(self) -> None:
        status = self._last_status
        ticks = np.diff(np.asarray(self._tick_wall)) if len(self._tick_wall) > 2 else None
        values = {
            "rate_hz": f"{1.0 / ticks.mean():.2f}" if ticks is not None else "n/a",
            "target_rate_hz": f"{self.rate:g}",
            "tick_clock": self.tick_clock,
            **self._tick_timing(),
            "enabled": str(self.core.enabled),
            "driver": "; ".join(self._outputs.last_problems) or "ready",
            "estopped": str(self.core.estopped),
            "speed_scale": f"{status.speed_scale:.2f}" if status else "n/a",
            "holding": str(bool(status and status.holding)),
            "hold_reason": status.hold_reason if status else "not started",
            "hold_duration_s": f"{status.hold_duration:.3f}" if status else "0",
            "chunk_age_s": f"{status.chunk_age:.3f}" if status else "inf",
            "covering_chunks": str(status.n_covering if status else 0),
            "commands_published": str(self._n_published),
            "hold_ticks": str(self._n_hold_ticks),
            "state_errors": str(self._state_errors),
            "stale_states": str(self._stale_states),
            "chunks_rejected_before_reset": str(self.core.rejected_before_reset),
            "chunks_rejected_future": str(self.core.rejected_future),
            **{f"chunks_{k}": str(v) for k, v in self.core.ensembler.counters.items()},
        }
        level = DiagnosticStatus.OK
        message = "executing"
        if self.core.estopped:
            level, message = DiagnosticStatus.ERROR, "e-stop"
        elif not self.core.enabled:
            message = "disabled"
        elif self._outputs.last_problems:
            level, message = DiagnosticStatus.ERROR, "driver not ready"
        elif status is None or not status.commanded:
            level, message = DiagnosticStatus.WARN, "no joint state yet"
        elif status.holding:
            level, message = DiagnosticStatus.WARN, f"holding: {status.hold_reason}"
        diag = DiagnosticArray()
        diag.header.stamp = self.get_clock().now().to_msg()
        diag.status = [
            DiagnosticStatus(
                level=level,
                name=f"{self.get_name()}: action executor",
                message=message,
                hardware_id=self.embodiment.name,
                values=[KeyValue(key=k, value=v) for k, v in values.items()],
            )
        ]
        self._diag_pub.publish(diag)
        if self.core.enabled:
            self._outputs.publish_enable()  # a driver restarted since still gets enabled


class _DriverOutputs:
    """Every arm's command outputs: publishers and action clients, what is sent per tick, and
    the checks that the driver can take it (subscribers, controllers, gripper ranges)."""

    CHECK_PERIOD_S = 0.5  # wall time between subscriber checks (cheap rcl calls)
    # How far (of the range) a gripper may read outside gripper_range before the first motion.
    # A closed gripper with nothing in it can read past its "closed" value.
    GRIPPER_MARGIN = 0.15

    def __init__(self, node: Node, embodiment, require_driver: bool):
        from rclpy.action import ActionClient

        self.node = node
        self.embodiment = embodiment
        self.require_driver = require_driver
        self.plans = {arm.name: co.plan_outputs(arm) for arm in embodiment.arms}
        self.streaming = any(p.output.stream for ps in self.plans.values() for p in ps)
        self._senders = {}
        for plans in self.plans.values():
            for plan in plans:
                if plan.output.is_action:
                    self._senders[id(plan)] = ActionClient(node, plan.msg_class, plan.topic)
                else:
                    self._senders[id(plan)] = node.create_publisher(
                        plan.msg_class, plan.topic, QoSProfile(depth=10)
                    )
        self._last_goal: dict[int, tuple[float, float]] = {}  # plan -> (value, wall time)
        self._enable_pubs = [node.create_publisher(Bool, arm.enable_topic, QoSProfile(depth=1))
                             for arm in embodiment.arms if arm.enable_topic]  # fmt: skip
        self._controller_state: dict[int, str] = {}  # plan -> problem ("" = fine)
        self._controller_clients = {}
        self._last_check = -1e9
        self._checked: list[str] = []
        self._gripper_problems: list[str] = []
        column = {int(s): i for i, s in enumerate(embodiment.action_slots)}
        self._grippers = [  # (column in action_slots order, arm, joint)
            (column[j.position_slot], arm, j) for arm in embodiment.arms for j in arm.joints
            if j.gripper_range is not None and j.position_slot in column
        ]  # fmt: skip

    # --- checks ---------------------------------------------------------------------------
    def check_grippers(self, values, moving: bool) -> None:
        """The measured state in ``action_slots`` order: a gripper far outside its
        gripper_range before the first motion means the YAML's range is another gripper's
        (ALOHA 1 vs ALOHA 2). Once the arms move (``moving``) it is not checked: a gripper
        squeezing an object reads what it reads, and stopping mid-grasp would do harm."""
        if moving:
            self._gripper_problems = []
            return
        problems = []
        for col, arm, joint in self._grippers:
            v = float(values[col])
            if -self.GRIPPER_MARGIN <= v <= 1 + self.GRIPPER_MARGIN:
                continue
            raw = joint.offset + v * joint.scale
            problems.append(
                f"{arm.name} gripper joint {joint.name!r} reads {raw:.4f}, outside its "
                f"gripper_range [closed, open] {list(joint.gripper_range)} ({arm.where}); set "
                "this gripper's own closed/open readings in the embodiment YAML"
            )
        self._gripper_problems = problems

    def problems(self, force: bool = False) -> list[str]:
        if not self.require_driver:
            return []
        now = time.monotonic()
        if force or now - self._last_check >= self.CHECK_PERIOD_S:
            self._last_check = now
            self._checked = self._check()
        return self.last_problems

    @property
    def last_problems(self) -> list[str]:
        """What the last check found (no new check)."""
        return self._checked + self._gripper_problems if self.require_driver else []

    def _check(self) -> list[str]:
        out = []
        for plans in self.plans.values():
            for plan in plans:
                sender = self._senders[id(plan)]
                what = f"{plan.output.type} ({plan.arm} arm: {list(plan.output.joints)})"
                if plan.output.is_action:
                    if not sender.server_is_ready():
                        out.append(f"no action server on {plan.topic}; the driver takes {what}:"
                                   " is it running, with this namespace?")  # fmt: skip
                elif sender.get_subscription_count() == 0:
                    out.append(f"nothing subscribes to {plan.topic}; the driver takes {what}: "
                               "is it running, with this namespace?")  # fmt: skip
                if plan.output.controller:
                    problem = self._controller(plan)
                    if problem:
                        out.append(f"{plan.topic}: {problem}")
        return out

    def _controller(self, plan) -> str:
        from controller_manager_msgs.srv import ListControllers

        out = plan.output
        service = f"{out.controller_manager.rstrip('/')}/list_controllers"
        client = self._controller_clients.get(service)
        if client is None:
            client = self._controller_clients[service] = self.node.create_client(
                ListControllers, service
            )
        if not client.service_is_ready():
            return f"no controller manager answers {service}: is the driver running?"
        future = client.call_async(ListControllers.Request())
        key = id(plan)
        future.add_done_callback(lambda f: self._on_controllers(key, out, f))
        return self._controller_state.get(key, f"waiting for {service}")

    def _on_controllers(self, key: int, output, future) -> None:
        try:
            controllers = future.result().controller
        except Exception as exc:
            self._controller_state[key] = f"list_controllers failed: {exc}"
            return
        self._controller_state[key] = co.controller_problem(output, controllers)

    # --- sending --------------------------------------------------------------------------
    def send(self, commands, now: float, dt: float, trajectories, step_s: float) -> None:
        for arm, plans in self.plans.items():
            row = commands[arm]
            for plan in plans:
                sender = self._senders[id(plan)]
                if plan.output.is_action:
                    self._send_goal(plan, sender, row)
                    continue
                trajectory = trajectories[arm] if (
                    trajectories is not None and plan.output.stream) else None  # fmt: skip
                sender.publish(plan.message(row, now, dt, trajectory, step_s))

    def _send_goal(self, plan, client, row) -> None:
        # A new goal when the target moved, at most every min_interval: a gripper action
        # server preempts its goal with each new one, so 50 goals a second would only churn.
        value = float(np.asarray(row)[plan.columns][0])
        last = self._last_goal.get(id(plan))
        wall = time.monotonic()
        if last is not None and (abs(value - last[0]) <= 1e-6
                                 or wall - last[1] < plan.output.min_interval):  # fmt: skip
            return
        client.send_goal_async(plan.goal(row))
        self._last_goal[id(plan)] = (value, wall)

    def publish_enable(self) -> None:
        for pub in self._enable_pubs:
            pub.publish(Bool(data=True))


def main(args=None) -> int:
    # halt: a tick already running when the signal came commands nothing more.
    return run_node(
        ActionExecutorNode, "action_executor", args, halt=lambda node: node.halt()
    )


if __name__ == "__main__":
    sys.exit(main())
