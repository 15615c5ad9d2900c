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
  each arm's ``command_topic`` with its ``command_type`` (Float64MultiArray, single-point
  JointTrajectory or JointState), every tick while enabled and the measured state is known;
  the held last command while no chunk covers "now" or the newest chunk is older than
  ``chunk_timeout``.
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
receding_horizon), ``ensembling_k``, ``receding_steps``, ``chunk_timeout`` (s), ``rate`` (Hz,
0 = the embodiment's control_frequency), ``enabled_on_start``, ``state_source``,
``unified_state_topic``, ``max_chunks``, ``stale_timeout`` (s), ``future_tolerance`` (s: a
chunk stamped further ahead of this node's clock is refused, counted as ``rejected_future``),
``start_ramp_s`` and ``start_speed_fraction`` (the first motion after enabling, a reset or a
lost heartbeat starts at that fraction of the velocity limits, reaching all of it after
``start_ramp_s``; 0 = no ramp), ``heartbeat_topic``, ``heartbeat_timeout`` (s; 0 = no heartbeat
needed), ``estop_topic``. Real bringups start disabled, ramped, with the e-stop on ``/estop``
(``real.yaml``).
The timer runs on ROS time (``use_sim_time`` works).
"""

from __future__ import annotations

import sys
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
from action_diffusion_policy.runtime import conversions as cv
from action_diffusion_policy.runtime.ensembler import EnsemblerConfig
from action_diffusion_policy.runtime.executor import ExecutorCore
from unified_action_space.conversions import joint_state_from_msg, unified_state_from_msg
from unified_action_space.nodes.node_main import run_node
from unified_action_space.state_assembler import StateAssembler, describe_problems

STATE_SOURCES = ("joint_states", "unified_state")


def load_embodiment(name_or_path: str):
    from unified_action_space import load_embodiment as load

    return load(name_or_path, kinematics=False)  # commands never need FK


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
        get = self._param

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

        self._command_pubs = {
            arm.name: self.create_publisher(
                cv.command_msg_class(arm.command_type), arm.command_topic, QoSProfile(depth=10)
            )
            for arm in emb.arms
        }
        self.assembler = StateAssembler(emb, get("stale_timeout"), fk=False)  # no FK needed
        if state_source == "joint_states":
            for arm in emb.arms:
                self.create_subscription(
                    JointState,
                    arm.joint_state_topic,
                    lambda msg, name=arm.name: self._on_joint_state(name, msg),
                    qos_profile_sensor_data,
                )
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
        self._last_status = None
        self._n_published = 0
        self._n_hold_ticks = 0
        self._state_errors = 0
        self._stale_states = 0
        self.create_timer(self.dt, self._tick)  # node clock: ROS time, sim time when set
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f"executing {emb.name} ({len(emb.action_slots)} slots) at {self.rate:g} Hz, "
            f"strategy {self.core.ensembler.config.strategy}, "
            f"{'enabled' if self.core.enabled else 'disabled'}; chunks on {CHUNK_TOPIC}"
        )

    def _param(self, name: str):
        return self.get_parameter(name).value

    # --- inputs ---------------------------------------------------------------------------
    def _on_joint_state(self, arm: str, msg: JointState) -> None:
        try:
            js = joint_state_from_msg(msg)
        except ValueError as exc:  # positions and names of different lengths
            self._state_errors += 1
            self.get_logger().warn(f"{arm} joint state rejected: {exc}", throttle_duration_sec=2.0)
            return
        stamp, names, positions = js.stamp, js.names, js.positions
        now_ns = self.get_clock().now().nanoseconds
        self.assembler.update(arm, names, positions, None, stamp, now_ns)
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
        self.core.set_measured(state.values[self.embodiment.action_slots])

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
        self.core.set_measured(values[slots])

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

    def _on_enable(self, request, response):
        response.success = self.core.set_enabled(request.data)
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
        return response

    def _on_heartbeat(self, msg: Bool) -> None:
        if msg.data:
            self.core.heartbeat(self.get_clock().now().nanoseconds * 1e-9)

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

    def _on_reset(self, request, response):
        now = self.get_clock().now().nanoseconds * 1e-9
        self.core.new_episode(now)
        self.assembler.clear()  # the next complete measured state restarts the commands
        response.success = True
        response.message = f"chunks cleared at t={now:.3f} s; restarting from the measured state"
        self.get_logger().info(response.message)
        return response

    # --- the control tick -----------------------------------------------------------------
    def _tick(self) -> None:
        self._tick_wall.append(time.monotonic())
        now = self.get_clock().now().nanoseconds * 1e-9
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
        commands = self.embodiment.commands_from_actions(command, self.core.slot_indices)
        for arm in self.embodiment.arms:
            msg = cv.command_to_msg(
                arm.command_type, commands[arm.name], arm.command_joint_names, now, self.dt
            )
            self._command_pubs[arm.name].publish(msg)
        self._n_published += 1

    def _publish_diagnostics(self) -> None:
        status = self._last_status
        ticks = np.diff(np.asarray(self._tick_wall)) if len(self._tick_wall) > 2 else None
        values = {
            "rate_hz": f"{1.0 / ticks.mean():.2f}" if ticks is not None else "n/a",
            "target_rate_hz": f"{self.rate:g}",
            "enabled": str(self.core.enabled),
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


def main(args=None) -> int:
    # halt: a tick already running when the signal came commands nothing more.
    return run_node(
        ActionExecutorNode, "action_executor", args, halt=lambda node: node.core.set_enabled(False)
    )


if __name__ == "__main__":
    sys.exit(main())
