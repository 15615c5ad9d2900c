"""sim_node: the simulated ALOHA as a ROS 2 node that behaves like the real robot.

Every 50 Hz control step it advances the MuJoCo sim and publishes ``/clock`` (simulated time,
the node is the clock source and runs on the wall clock itself), the follower joint states,
``/sim/episode_status`` and, at ``camera_rate``, the camera images; all stamped with sim time.
It takes the real follower command topics (7 values per arm) and offers ``/sim/reset``.

Parameters:
    task (str): "transfer_cube" or "insertion" (default "transfer_cube").
    seed (int): seed of the first episode (default 0).
    render_height, render_width (int): camera image size (default 240 x 320).
    cameras (str[]): cameras to publish (default cam_high, cam_left_wrist, cam_right_wrist).
    camera_rate (float): images per second of sim time (default 25 = every 2nd control step;
        0 publishes no images).
    real_time_factor (float): sim seconds per wall second at most (default 1.0; 0 = as fast as
        the CPU allows). Sim time runs slower than that when the CPU cannot keep up.
    episode_length (int): control steps per episode (default 400; 0 = no limit). At the end the
        physics is frozen (clock and topics go on, commands are ignored) until ``/sim/reset``.

A command with a NaN/inf value, a joint outside its range or the wrong length is rejected, the
arm holds its last accepted target, and the rejection is counted and logged (rate-limited).
"""

from __future__ import annotations

import sys

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray

from action_diffusion_msgs.msg import EpisodeStatus
from action_diffusion_msgs.srv import ResetEpisode
from aloha_sim.env import (
    ARMS,
    CAMERAS,
    CONTROL_FREQUENCY,
    DEFAULT_CAMERAS,
    JOINT_NAMES,
    TASKS,
    AlohaSimEnv,
)
from aloha_sim.nodes.conversions import (
    Status,
    clock_msg,
    command_from_msg,
    episode_status_msg,
    image_msg,
)
from unified_action_space.conversions import joint_state_to_msg
from unified_action_space.nodes.node_main import run_node

CLOCK_TOPIC = "/clock"
STATUS_TOPIC = "/sim/episode_status"
RESET_SERVICE = "/sim/reset"
LOG_THROTTLE_S = 2.0
STEP_NS = round(1e9 / CONTROL_FREQUENCY)


def joint_state_topic(arm: str) -> str:
    return f"/follower_{arm}/joint_states"


def command_topic(arm: str) -> str:
    return f"/follower_{arm}/commands/joint_positions"


def camera_topic(camera: str) -> str:
    return f"/cameras/{camera}/image_raw"


class SimNode(Node):
    def __init__(self, **kwargs):
        super().__init__("sim", **kwargs)
        self.declare_parameter("task", "transfer_cube")
        self.declare_parameter("seed", 0)
        self.declare_parameter("render_height", 240)
        self.declare_parameter("render_width", 320)
        self.declare_parameter("cameras", list(DEFAULT_CAMERAS))
        self.declare_parameter("camera_rate", 25.0)
        self.declare_parameter("real_time_factor", 1.0)
        self.declare_parameter("episode_length", 400)
        get = self._param

        task = str(get("task"))
        if task not in TASKS:
            raise ValueError(f"parameter task={task!r} is unknown; known tasks: {sorted(TASKS)}")
        cameras = [c for c in get("cameras") if c]
        unknown = [c for c in cameras if c not in CAMERAS]
        if unknown:
            raise ValueError(f"parameter cameras: unknown {unknown}; known: {sorted(CAMERAS)}")
        size = (int(get("render_height")), int(get("render_width")))
        if min(size) <= 0:
            raise ValueError(f"parameters render_height/render_width={size}: must be > 0")
        camera_rate = float(get("camera_rate"))
        rtf = float(get("real_time_factor"))
        self.episode_length = int(get("episode_length"))
        for name, value in (("camera_rate", camera_rate), ("real_time_factor", rtf),
                            ("episode_length", self.episode_length)):  # fmt: skip
            if value < 0:
                raise ValueError(f"parameter {name}={value}: must be >= 0")
        self.cameras = cameras if camera_rate > 0 else []
        # A camera tick every `camera_every` control steps (rounded to the control grid).
        self.camera_every = max(1, round(CONTROL_FREQUENCY / camera_rate)) if camera_rate else 0

        self.env = AlohaSimEnv(task, render_size=size, cameras=self.cameras)
        self.env.reset(int(get("seed")))
        self.sim_ns = 0  # monotonic over episodes: /clock never jumps back on a reset
        self.rejected = dict.fromkeys(ARMS, 0)

        self._clock_pub = self.create_publisher(Clock, CLOCK_TOPIC, 10)
        self._status_pub = self.create_publisher(EpisodeStatus, STATUS_TOPIC, 10)
        # Reliable, as the real arm drivers: serves reliable and best-effort subscribers alike.
        self._joint_pubs = {
            arm: self.create_publisher(JointState, joint_state_topic(arm), 10) for arm in ARMS
        }
        self._image_pubs = {
            cam: self.create_publisher(Image, camera_topic(cam), QoSProfile(depth=2))
            for cam in self.cameras
        }
        for arm in ARMS:
            self.create_subscription(
                Float64MultiArray,
                command_topic(arm),
                lambda msg, arm=arm: self._on_command(arm, msg),
                10,
            )
        self.create_service(ResetEpisode, RESET_SERVICE, self._on_reset)
        # The node runs on the wall clock; rtf 0 steps as often as the executor allows.
        period = (1.0 / CONTROL_FREQUENCY) / rtf if rtf > 0 else 1e-4
        self.create_timer(period, self._step)
        self._publish_state()
        self.get_logger().info(
            f"task {task!r} seed {self.env.seed}, {CONTROL_FREQUENCY:g} Hz control, "
            f"real_time_factor {rtf:g}, cameras {self.cameras or 'none'} at "
            f"{size[0]}x{size[1]} every {self.camera_every} steps, "
            f"episode_length {self.episode_length or 'unlimited'}"
        )

    def _param(self, name: str):
        return self.get_parameter(name).value

    @property
    def episode_over(self) -> bool:
        return bool(self.episode_length) and self.env.step_count >= self.episode_length

    # ------------------------------------------------------------------ callbacks
    def _on_command(self, arm: str, msg: Float64MultiArray) -> None:
        if self.episode_over:
            return
        if not self.env.set_command(arm, command_from_msg(msg)):
            self.rejected[arm] += 1
            self.get_logger().warning(
                f"rejected command on {command_topic(arm)} ({self.rejected[arm]} so far), "
                f"holding position: {self.env.last_rejection}",
                throttle_duration_sec=LOG_THROTTLE_S,
            )

    def _on_reset(self, request: ResetEpisode.Request, response: ResetEpisode.Response):
        seed = int(request.seed)
        if not request.use_seed:
            seed = int(np.random.default_rng().integers(0, 2**31 - 1))
        self.env.reset(seed)
        # The reset state gets a fresh stamp: subscribers drop a repeated stamp as out of order.
        self.sim_ns += STEP_NS
        self._publish_state()
        response.success = True
        response.seed = seed
        response.message = f"{self.env.task} episode reset with seed {seed}"
        self.get_logger().info(response.message)
        return response

    def _step(self) -> None:
        stepped = not self.episode_over
        if stepped:
            self.env.step()
        self.sim_ns += STEP_NS
        self._publish_state(images=stepped)

    # ------------------------------------------------------------------ publishing
    def status(self) -> Status:
        env = self.env
        return Status(
            task=env.task,
            seed=env.seed,
            step=env.step_count,
            reward=env.reward,
            max_reward=env.max_reward,
            success=env.success,
            object_poses=env.object_poses(),
            stamp_ns=self.sim_ns,
        )

    def _publish_state(self, images: bool = True) -> None:
        stamp = self.sim_ns
        self._clock_pub.publish(clock_msg(stamp))
        for arm in ARMS:
            self._joint_pubs[arm].publish(
                joint_state_to_msg(
                    JOINT_NAMES,
                    self.env.joint_positions(arm),
                    self.env.joint_velocities(arm),
                    stamp,
                )
            )
        self._status_pub.publish(episode_status_msg(self.status()))
        if images and self.camera_every and self.env.step_count % self.camera_every == 0:
            for cam in self.cameras:
                self._image_pubs[cam].publish(image_msg(self.env.render(cam), stamp, cam))

    def destroy_node(self):
        self.env.close()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(SimNode, "sim_node", args)  # destroy_node closes the sim


if __name__ == "__main__":
    sys.exit(main())
