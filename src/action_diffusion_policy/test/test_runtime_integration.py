"""The deployed loop over real DDS: synthetic cameras (2 x 30 Hz, 480x640) and joint states
(50 Hz) -> policy_node (tiny checkpoint, own process) -> ActionChunks -> action_executor (own
process) -> commands at 50 Hz inside the limits; stopping the chunk stream makes it hold."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray

from action_diffusion_msgs.msg import ActionChunk
from action_diffusion_policy.runtime import conversions as cv
from action_diffusion_policy.testing.node_process import start_node, stop_node, wait_until

# The executor's rate is what it measures of its own ticks (/diagnostics). Counted at the
# stand-in, which also publishes ~55 MB/s of images from Python, it is the stand-in's
# throughput: on a busy 2-core machine that fell to 15-25 messages/s while the node kept 50 Hz.
# Kept out of `make test` (`make test-all` runs it): at 11:00 on 2026-11-21, on this 2-core
# machine, it failed 5 runs in 5 at the earlier commit and 2 in 6 with the node-side checks
# below, while the executor test passed: the stand-in and the policy node starve on the images
# (chunks 0.8-1.7 s old at the executor). It passed in both clean-clone CI runs earlier that day.
pytestmark = [pytest.mark.ros, pytest.mark.slow]

CAMERAS = ("cam_high", "cam_left_wrist")
JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate",
          "left_finger", "right_finger"]  # fmt: skip
HOME = [0.0, -0.96, 1.16, 0.0, -0.3, 0.0, 0.03, -0.03]


def make_tiny_checkpoint(path: Path, embodiment) -> Path:
    """A randomly initialized tiny U-Net policy for the embodiment (the policy core's API)."""
    import torch

    from action_diffusion_policy.checkpoint import save_checkpoint
    from action_diffusion_policy.config import PolicyConfig
    from action_diffusion_policy.policy import ActionChunkPolicy

    torch.manual_seed(0)
    slots = [int(s) for s in embodiment.action_slots]
    config = PolicyConfig(
        backbone="unet", size="tiny", horizon=64, n_obs_steps=2, camera_names=list(CAMERAS),
        image_size=(48, 64), state_slots=slots, action_slots=slots, control_frequency=50.0,
        embodiments=[embodiment.name], num_inference_steps=4,
    )  # fmt: skip
    return save_checkpoint(ActionChunkPolicy(config), path)


class RobotStandIn(Node):
    """Publishes what a robot publishes and records what the runtime sends back."""

    def __init__(self):
        super().__init__("robot_stand_in")
        rng = np.random.default_rng(0)
        self.images = {
            cam: cv.rgb_to_image_msg(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), Image)
            for cam in CAMERAS
        }
        self.image_pubs = {
            cam: self.create_publisher(Image, f"/cameras/{cam}/image_raw", 5) for cam in CAMERAS
        }
        self.js_pubs = {
            arm: self.create_publisher(JointState, f"/follower_{arm}/joint_states", 10)
            for arm in ("left", "right")
        }
        self.chunks = []
        self.commands = {"left": [], "right": []}
        self.create_subscription(ActionChunk, "/policy/action_chunk", self._on_chunk, 10)
        for arm in ("left", "right"):
            self.create_subscription(
                Float64MultiArray, f"/follower_{arm}/commands/joint_positions",
                lambda msg, a=arm: self.commands[a].append((time.monotonic(), list(msg.data))),
                1000,  # a stand-in that falls behind must not drop commands (the step check)
            )  # fmt: skip
        self.executor_diagnostics: dict[str, str] = {}
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.create_timer(1 / 30, self._publish_images)
        self.create_timer(1 / 50, self._publish_joint_states)

    def _publish_images(self):
        for cam, msg in self.images.items():
            msg.header.stamp = self.get_clock().now().to_msg()
            self.image_pubs[cam].publish(msg)

    def _publish_joint_states(self):
        for pub in self.js_pubs.values():
            msg = JointState(name=JOINTS, position=HOME, velocity=[0.0] * 8)
            msg.header.stamp = self.get_clock().now().to_msg()
            pub.publish(msg)

    def _on_diagnostics(self, msg):
        for status in msg.status:
            if status.name.startswith("action_executor"):
                self.executor_diagnostics = {kv.key: kv.value for kv in status.values}

    def _on_chunk(self, msg):
        self.chunks.append((self.get_clock().now().nanoseconds * 1e-9, cv.chunk_from_msg(msg)))




def test_cameras_to_commands_over_dds(tmp_path):
    from unified_action_space import load_embodiment

    emb = load_embodiment("aloha_sim", kinematics=False)
    # The executor starts while the checkpoint is written: start-up dominates this test.
    executor = start_node(
        "action_diffusion_policy.nodes.action_executor",
        {"embodiment": "aloha_sim", "chunk_timeout": 0.5},
        tmp_path / "executor.log",
    )
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt", emb)
    cameras = "[" + ",".join(f"/cameras/{c}/image_raw" for c in CAMERAS) + "]"
    policy = start_node(
        "action_diffusion_policy.nodes.policy_node",
        {"checkpoint": ckpt, "embodiment": "aloha_sim", "camera_topics": cameras,
         "state_source": "joint_states", "torch_threads": 1, "inference_rate": 10.0},
        tmp_path / "policy.log",
    )  # fmt: skip
    rclpy.init()
    robot = RobotStandIn()
    spinner = MultiThreadedExecutor(num_threads=2)
    spinner.add_node(robot)
    thread = threading.Thread(target=spinner.spin, daemon=True)
    thread.start()
    try:
        ok = wait_until(lambda: len(robot.chunks) >= 5 or policy.poll() is not None, timeout=60)
        ok = ok and policy.poll() is None
        assert ok, "no chunks:\n" + (tmp_path / "policy.log").read_text()[-3000:]
        for received_at, chunk in robot.chunks:
            assert chunk.slot_indices.tolist() == [int(s) for s in emb.action_slots]
            assert chunk.actions.shape == (64, 14) and np.isfinite(chunk.actions).all()
            assert chunk.step_period == pytest.approx(0.02)
            assert 0.0 < received_at - chunk.stamp < 2.0  # stamped with the observation time
        # 2 s of commands at 50 Hz, inside the limits and the per-tick step. The stand-in
        # publishes ~55 MB/s of images from Python and receives in bursts (5 to 120 commands
        # counted in one 2 s window on this machine while the node kept 50 Hz), so the rate is
        # the node's own, and the stand-in checks what it received, in order, none dropped.
        start = len(robot.commands["right"])
        time.sleep(2.0)
        rate = float(robot.executor_diagnostics.get("rate_hz", "nan"))
        log = (tmp_path / "executor.log").read_text()[-2000:]
        assert 45.0 <= rate <= 55.0, (robot.executor_diagnostics, log)
        time.sleep(0.5)  # let a backlog drain
        window = robot.commands["right"][start:]
        assert len(window) >= 20, (len(window), log)
        cmds = np.array([c for _, c in window])
        arm = emb.arm("right")
        lim = arm.command_position_limits
        assert (cmds >= lim[:, 0] - 1e-9).all() and (cmds <= lim[:, 1] + 1e-9).all()
        steps = np.abs(np.diff(cmds, axis=0)).max(axis=0)
        assert (steps <= arm.command_velocity_limits * 0.02 + 1e-6).all()
        assert np.ptp(cmds, axis=0).max() > 0  # it follows the chunks, not only holding

        # Stop the chunk stream (deactivate the lifecycle node): the executor holds.
        client = robot.create_client(ChangeState, "/policy/change_state")
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(
            ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE))
        )
        assert wait_until(future.done, 10) and future.result().success
        n_chunks = len(robot.chunks)
        time.sleep(1.2)
        assert len(robot.chunks) <= n_chunks + 1  # one may have been in flight
        # Still publishing (its own count, as for the rate), the same held command.
        before = int(robot.executor_diagnostics["commands_published"])
        time.sleep(1.1)
        after = robot.executor_diagnostics
        assert after["holding"] == "True", after
        assert int(after["commands_published"]) - before >= 40, "stopped instead of holding"
        time.sleep(0.5)  # let a backlog drain: the last ones received are held commands
        held = [c for _, c in robot.commands["right"][-10:]]
        assert len(held) == 10 and all(c == held[0] for c in held)
    finally:
        spinner.shutdown()
        robot.destroy_node()
        rclpy.shutdown()
        thread.join(timeout=5)
        stop_node(policy)
        stop_node(executor)
    log = (tmp_path / "executor.log").read_text()
    assert "holding the last command: timeout" in log
