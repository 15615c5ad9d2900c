"""Command rows -> the messages each driver takes (no rclpy: tested with plain pytest).

One arm's command row (``ArmConfig.command_joint_names`` order, the driver's units) is split over
the arm's ``command_outputs``; each output gets its joints' values in its own message type:
Float64MultiArray (a ros2_control forward controller), JointState (PiPER), JointTrajectory (a
joint trajectory controller, one point or the streamed rest of the chunk), Interbotix
JointGroupCommand / JointSingleCommand, or a control_msgs GripperCommand action goal.

Vendor message packages are imported when first needed, from the ROS installation the node runs
in (the robot PC's, or this workspace's test stand-ins in src/driver_standins/).
"""

from __future__ import annotations

import array
import importlib
from dataclasses import dataclass

import numpy as np

from unified_action_space.conversions import set_stamp
from unified_action_space.embodiment import (
    FLOAT64_ARRAY,
    GRIPPER_COMMAND_ACTION,
    JOINT_GROUP_COMMAND,
    JOINT_SINGLE_COMMAND,
    JOINT_STATE,
    JOINT_TRAJECTORY,
    ArmConfig,
    CommandOutput,
)


class DriverInterfaceError(ValueError):
    """A command output's message package is not installed (a configuration error)."""


def interface_class(type_name: str):
    """``pkg/msg/Name`` or ``pkg/action/Name`` -> the generated Python class."""
    try:
        package, kind, name = type_name.split("/")
    except ValueError:
        raise DriverInterfaceError(
            f"{type_name!r} is not a ROS interface name (package/msg/Name)"
        ) from None
    try:
        module = importlib.import_module(f"{package}.{kind}")
        return getattr(module, name)
    except (ImportError, AttributeError) as exc:
        raise DriverInterfaceError(
            f"{type_name}: the driver's interface package {package!r} is not installed here "
            f"({exc}); source the ROS installation the driver runs from (e.g. /opt/ros/jazzy "
            f"and the driver's workspace install/setup.bash) before launching"
        ) from None


def _float64(values: np.ndarray) -> array.array:
    out = array.array("d")  # the messages' fast path for float64 sequences
    out.frombytes(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return out


@dataclass
class OutputPlan:
    """One output of one arm, ready to turn a command row into its message."""

    arm: str
    output: CommandOutput
    columns: np.ndarray  # where the output's joints sit in the arm's command row
    msg_class: type

    @property
    def topic(self) -> str:
        return self.output.topic

    def message(self, row, stamp_s: float, dt: float, trajectory=None, step_s: float = 0.0):
        """The message for this tick (topic outputs only).

        ``row``: the arm's command row; ``trajectory``: (n, n_row) rows for a streamed
        JointTrajectory (row 0 = this tick's), ``step_s`` apart.
        """
        out = self.output
        if out.is_action:
            raise ValueError(f"{out.type} is sent as an action goal, not a message")
        values = np.asarray(row, dtype=np.float64)[self.columns]
        if not np.isfinite(values).all():
            raise ValueError(f"refusing to send non-finite values {values} on {out.topic}")
        msg = self.msg_class()
        kind = out.type
        if kind == FLOAT64_ARRAY:
            msg.data = _float64(values)
        elif kind == JOINT_STATE:
            set_stamp(msg.header.stamp, stamp_s)
            msg.name = list(out.message_joint_names)
            msg.position = _float64(values)
            if out.velocity is not None:
                msg.velocity = _float64(np.asarray(out.velocity))
            if out.effort is not None:
                msg.effort = _float64(np.asarray(out.effort))
        elif kind == JOINT_TRAJECTORY:
            self._fill_trajectory(msg, values, dt, trajectory, step_s)
        elif kind == JOINT_GROUP_COMMAND:
            msg.name = out.name
            msg.cmd = array.array("f", values.astype(np.float32).tobytes())  # float32[]
        elif kind == JOINT_SINGLE_COMMAND:
            msg.name = out.driver_name
            msg.cmd = float(values[0])
        else:  # OUTPUT_TYPES has no other message type
            raise AssertionError(kind)
        return msg

    def _fill_trajectory(self, msg, values, dt, trajectory, step_s) -> None:
        # Stamp zero: the controller starts the trajectory on receipt. A stamp of "now" lies in
        # the past once delivery takes longer than the first point's time, and is rejected.
        from trajectory_msgs.msg import JointTrajectoryPoint

        msg.joint_names = list(self.output.message_joint_names)
        rows = [values] if trajectory is None else np.asarray(trajectory)[:, self.columns]
        points = []
        for i, positions in enumerate(rows):
            point = JointTrajectoryPoint(positions=_float64(positions))
            set_stamp(point.time_from_start, dt + i * step_s)
            points.append(point)
        msg.points = points

    def goal(self, row):
        """The GripperCommand goal for this row (action outputs)."""
        if self.output.type != GRIPPER_COMMAND_ACTION:
            raise ValueError(f"{self.output.type} is a message, not an action")
        goal = self.msg_class.Goal()
        goal.command.position = float(np.asarray(row, dtype=np.float64)[self.columns][0])
        goal.command.max_effort = float(self.output.max_effort)
        return goal


def plan_outputs(arm: ArmConfig) -> list[OutputPlan]:
    """The arm's outputs with their message classes; DriverInterfaceError names a missing
    package."""
    return [
        OutputPlan(arm.name, out, arm.output_columns(out), interface_class(out.type))
        for out in arm.command_outputs
    ]


def controller_problem(output: CommandOutput, controllers) -> str:
    """Why ``output``'s ros2_control controller cannot take its commands ("" when it can), from
    a ``controller_manager_msgs/srv/ListControllers`` response's ``controller`` list."""
    manager = output.controller_manager.rstrip("/")
    for state in controllers:
        if state.name != output.controller:
            continue
        if state.state != "active":
            return (
                f"controller {output.controller!r} is {state.state}, not active; activate it "
                f"(ros2 control switch_controllers -c {manager} --activate {output.controller}"
                " and deactivate the one that holds these joints)"
            )
        claimed = {i.split("/")[0] for i in
                   (*state.claimed_interfaces, *state.required_command_interfaces)}  # fmt: skip
        missing = [j for j in output.joints if j not in claimed]
        if missing:
            return (
                f"controller {output.controller!r} does not command joint(s) {missing} "
                f"(it claims {sorted(claimed)}); fix the joint names in the embodiment YAML"
            )
        return ""
    names = sorted(s.name for s in controllers)
    return f"{manager} has no controller {output.controller!r} (it has {names})"
