"""scripted_expert_node: drives the sim with the scripted expert through the follower command
topics, the same topics a teleoperator's leader arms drive, so its demonstrations record
exactly like human ones.

For each ``/sim/episode_status`` it computes the commands for that control step from the
status's object poses and the latest follower joint states, and publishes them. A new episode
(a different seed, or a step count that went back) restarts the plan.

Parameters:
    task (str): task to expect; "" (default) follows the task named in the episode status.
        A status of another task is ignored with a warning.
    vary (bool): per-seed variation of the plan's timing and meeting point (default true).
    use_sim_time (bool): true unless given (the sim publishes /clock).
"""

from __future__ import annotations

import sys

import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from action_diffusion_msgs.msg import EpisodeStatus
from aloha_sim.env import ARMS, JOINT_NAMES, TASKS
from aloha_sim.expert import ScriptedExpert
from aloha_sim.nodes.conversions import command_msg, status_from_msg
from aloha_sim.nodes.sim_node import STATUS_TOPIC, command_topic, joint_state_topic
from unified_action_space.conversions import joint_positions_from_msg, stamp_to_ns
from unified_action_space.nodes.node_main import run_node

LOG_THROTTLE_S = 2.0


class ScriptedExpertNode(Node):
    def __init__(self, **kwargs):
        super().__init__("scripted_expert", **kwargs)
        self.declare_parameter("task", "")
        self.declare_parameter("vary", True)
        self.task = str(self.get_parameter("task").value)
        if self.task and self.task not in TASKS:
            raise ValueError(f"parameter task={self.task!r} is unknown; known: {sorted(TASKS)}")
        self.vary = bool(self.get_parameter("vary").value)
        self.expert: ScriptedExpert | None = None
        self._episode: tuple[int, int] | None = None  # (seed, last step)
        self._joints: dict[str, np.ndarray] = {}
        self._joint_stamps_ns: dict[str, int] = {}
        self.published = 0
        self.restarts = 0
        self._pubs = {
            arm: self.create_publisher(Float64MultiArray, command_topic(arm), 10) for arm in ARMS
        }
        for arm in ARMS:
            self.create_subscription(
                JointState,
                joint_state_topic(arm),
                lambda msg, arm=arm: self._on_joint_state(arm, msg),
                qos_profile_sensor_data,
            )
        self.create_subscription(EpisodeStatus, STATUS_TOPIC, self._on_status, 10)
        self.get_logger().info(
            f"scripted expert for task {self.task or '(from the episode status)'}, "
            f"commands on {', '.join(command_topic(a) for a in ARMS)}"
        )

    def _on_joint_state(self, arm: str, msg: JointState) -> None:
        positions = joint_positions_from_msg(msg, JOINT_NAMES)
        if positions is None or not np.all(np.isfinite(positions)):
            self.get_logger().warning(
                f"ignoring joint state on {joint_state_topic(arm)}: "
                f"needs finite {', '.join(JOINT_NAMES)}",
                throttle_duration_sec=LOG_THROTTLE_S,
            )
            return
        self._joints[arm] = positions
        self._joint_stamps_ns[arm] = stamp_to_ns(msg.header.stamp)

    def _on_status(self, msg: EpisodeStatus) -> None:
        status = status_from_msg(msg)
        if self.task and status.task != self.task:
            self.get_logger().warning(
                f"episode status is for task {status.task!r}, this expert runs {self.task!r}",
                throttle_duration_sec=LOG_THROTTLE_S,
            )
            return
        if len(self._joints) < len(ARMS):
            return  # joint states not there yet
        if self.expert is None or self.expert.task != status.task:
            if status.task not in TASKS:
                self.get_logger().error(f"no scripted expert for task {status.task!r}")
                return
            self.expert = ScriptedExpert(status.task, vary=self.vary)
            self._episode = None
        if (
            self._episode is None
            or status.seed != self._episode[0]
            or status.step < self._episode[1]
        ):
            # The plan starts from the arms' pose: joint states from before the reset (they
            # travel on other topics and may arrive after the new episode's status) would
            # start it from the old episode's pose. Wait for fresh ones; the next status retries.
            if min(self._joint_stamps_ns.values()) < status.stamp_ns:
                return
            self.expert.reset(status.seed)
            self.restarts += 1
            self.get_logger().info(f"episode seed {status.seed}: plan restarted")
        self._episode = (status.seed, status.step)
        commands = self.expert.act(status.step, self._joints, status.object_poses)
        for arm in ARMS:
            self._pubs[arm].publish(command_msg(commands[arm]))
        self.published += 1


def _with_sim_time_default(args: list[str]) -> list[str]:
    """Add use_sim_time:=true unless the command line sets it."""
    if any("use_sim_time" in a for a in args):
        return args
    return [*args, "--ros-args", "-p", "use_sim_time:=true"]


def main(args=None) -> int:
    args = _with_sim_time_default(list(sys.argv if args is None else args))
    return run_node(ScriptedExpertNode, "scripted_expert_node", args)


if __name__ == "__main__":
    sys.exit(main())
