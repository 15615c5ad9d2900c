"""unified_state_node: every arm's sensor_msgs/JointState -> action_diffusion_msgs/UnifiedState.

Parameters:
    embodiment (str): shipped embodiment name or path to a YAML (default "aloha_sim").
    rate (float): publish rate in Hz; 0 = the embodiment's control frequency.
    publish_on (str): "timer" publishes the latest joint states every 1/rate; "inputs" publishes
        as soon as every arm has sent a joint state since the last publication and the newest
        stamp advanced by at least 3/4 of 1/rate: one state per control step with no timer
        delay and no mix of one arm's new and the other's previous message.
    stale_timeout (float): seconds without a joint state before an arm counts as stale.
    fk (bool): fill the end-effector slots by forward kinematics when the embodiment has a model.
    diagnostics_period (float): seconds between /diagnostics reports.

Publishes ``/unified_state`` at the rate, stamped with the newest input stamp, only when every
arm has a fresh, valid joint state: a missing, stale or rejected (NaN/inf, missing joint) arm is
logged (rate-limited) and reported on ``/diagnostics``, never published as zeros.
"""

from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import JointState

from action_diffusion_msgs.msg import UnifiedState
from unified_action_space.conversions import joint_state_from_msg, unified_state_to_msg
from unified_action_space.embodiment import (
    JointStateError,
    load_embodiment,
)
from unified_action_space.nodes.joint_state_inputs import subscribe_joint_states
from unified_action_space.nodes.node_main import run_node
from unified_action_space.state_assembler import MISSING, StateAssembler, describe_problems

UNIFIED_STATE_TOPIC = "/unified_state"
PUBLISH_MODES = ("timer", "inputs")
DIAGNOSTICS_TOPIC = "/diagnostics"
LOG_THROTTLE_S = 2.0


class UnifiedStateNode(Node):
    def __init__(self, **kwargs):
        super().__init__("unified_state", **kwargs)
        number = ParameterDescriptor(dynamic_typing=True)  # accept rate:=20 as well as 20.0
        self.declare_parameter("embodiment", "aloha_sim")
        self.declare_parameter("rate", 0.0, number)
        self.declare_parameter("stale_timeout", 0.5, number)
        self.declare_parameter("fk", True)
        self.declare_parameter("publish_on", "timer")
        self.declare_parameter("diagnostics_period", 1.0, number)
        get = self._param

        self.embodiment = load_embodiment(get("embodiment"), kinematics=bool(get("fk")))
        emb = self.embodiment
        rate = float(get("rate")) or emb.control_frequency
        if rate <= 0:
            raise ValueError(f"parameter rate={rate}: must be > 0 (or 0 for the control rate)")
        self.fk = bool(get("fk"))
        self.assembler = StateAssembler(emb, float(get("stale_timeout")), fk=self.fk)
        self.publish_on = str(get("publish_on"))
        if self.publish_on not in PUBLISH_MODES:
            raise ValueError(
                f"parameter publish_on={self.publish_on!r}: use one of {PUBLISH_MODES}"
            )
        self._min_stamp_step_ns = int(0.75e9 / rate)
        self._fresh: set[str] = set()  # arms heard from since the last publication
        self._last_stamp_ns: int | None = None

        self._problems: dict[str, tuple[int, str]] = {}  # arm -> (DiagnosticStatus level, text)
        self.published = 0
        self.rejected = 0
        self._pub = self.create_publisher(UnifiedState, UNIFIED_STATE_TOPIC, QoSProfile(depth=10))
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        subscribe_joint_states(self, emb, self._on_joint_state)
        self.create_timer(1.0 / rate, self._tick)
        self.create_timer(float(get("diagnostics_period")), self._publish_diagnostics)
        topics = ", ".join(f"{a.name}: {' + '.join(a.joint_state_topics)}" for a in emb.arms)
        self.get_logger().info(
            f"embodiment {emb.name!r} ({emb.source}), {rate:g} Hz, FK "
            f"{'on' if self.fk and emb.has_kinematics else 'off'}; joint states {topics}"
        )

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _on_joint_state(self, arm: str, msg: JointState, topic: str | None = None) -> None:
        try:
            names, positions, velocities, stamp_ns = joint_state_from_msg(msg)
        except ValueError as exc:  # positions and names of different lengths
            self.rejected += 1
            self._problems[arm] = (DiagnosticStatus.ERROR, f"rejected: {exc}")
            self.get_logger().error(
                f"arm {arm!r}: joint state rejected: {exc}", throttle_duration_sec=LOG_THROTTLE_S
            )
            return
        now = self.get_clock().now().nanoseconds
        self.assembler.update(arm, names, positions, velocities, stamp_ns, now, topic)
        if self.publish_on == "inputs":
            self._fresh.add(arm)
            if len(self._fresh) == len(self.embodiment.arms) and (
                self._last_stamp_ns is None
                or self.assembler.newest_stamp() >= self._last_stamp_ns + self._min_stamp_step_ns
            ):
                self._publish()

    def _tick(self) -> None:
        if self.publish_on == "timer":
            self._publish()
            return
        self._arms_ok()  # publish_on inputs: the timer only watches for missing and stale arms

    def _arms_ok(self) -> bool:
        """True when every arm has a fresh joint state; otherwise record and log why not."""
        return self._record_problems(self.assembler.problems(self.get_clock().now().nanoseconds))

    def _record_problems(self, problems) -> bool:
        if not problems:
            return True
        self._problems = {
            arm: (DiagnosticStatus.ERROR if p.kind == MISSING else DiagnosticStatus.WARN, p.text)
            for arm, p in problems.items()
        }
        self.get_logger().warning(
            f"not publishing {UNIFIED_STATE_TOPIC}: {describe_problems(problems)}",
            throttle_duration_sec=LOG_THROTTLE_S,
        )
        return False

    def _publish(self) -> None:
        try:
            state, problems = self.assembler.assemble(self.get_clock().now().nanoseconds)
        except JointStateError as exc:
            self.rejected += 1
            self._problems = {exc.arm or "?": (DiagnosticStatus.ERROR, f"rejected: {exc}")}
            self.get_logger().error(
                f"joint state rejected, not publishing: {exc}",
                throttle_duration_sec=LOG_THROTTLE_S,
            )
            return
        if not self._record_problems(problems):
            return
        self._problems = {}
        self._fresh.clear()
        self._last_stamp_ns = state.stamp
        emb = self.embodiment
        self._pub.publish(
            unified_state_to_msg(state.values, state.mask, emb.name, emb.control_frequency,
                                 state.stamp)
        )  # fmt: skip
        self.published += 1

    def diagnostics(self) -> DiagnosticArray:
        """One status per arm: OK, WARN (stale) or ERROR (missing / rejected)."""
        now = self.get_clock().now()
        array = DiagnosticArray()
        array.header.stamp = now.to_msg()
        for arm in self.embodiment.arms:
            level, text = self._problems.get(arm.name, (DiagnosticStatus.OK, "ok"))
            latest = self.assembler.latest(arm.name)
            age = "never"
            if latest is not None:
                age = f"{(now.nanoseconds - latest.received_ns) / 1e9:.3f}"
            array.status.append(
                DiagnosticStatus(
                    level=level,
                    name=f"unified_state: {arm.name} arm",
                    message=text,
                    hardware_id=self.embodiment.name,
                    values=[
                        KeyValue(key="topic", value=arm.joint_state_topic),
                        KeyValue(key="age_s", value=age),
                        KeyValue(key="published", value=str(self.published)),
                        KeyValue(key="rejected", value=str(self.rejected)),
                    ],
                )
            )
        return array

    def _publish_diagnostics(self) -> None:
        self._diag_pub.publish(self.diagnostics())


def main(args=None) -> int:
    return run_node(UnifiedStateNode, "unified_state_node", args)


if __name__ == "__main__":
    sys.exit(main())
