"""sim_node and scripted_expert_node over real DDS: clock, joint states, images, reset,
command rejection, and the expert driving the sim to success."""

import itertools
import os
import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402

from action_diffusion_msgs.msg import EpisodeStatus  # noqa: E402
from action_diffusion_msgs.srv import ResetEpisode  # noqa: E402
from aloha_sim.env import JOINT_NAMES, AlohaSimEnv  # noqa: E402
from aloha_sim.nodes.conversions import command_msg, image_from_msg  # noqa: E402
from aloha_sim.nodes.scripted_expert_node import ScriptedExpertNode  # noqa: E402
from aloha_sim.nodes.sim_node import SimNode  # noqa: E402
from unified_action_space.conversions import (  # noqa: E402
    joint_positions_from_msg,
    stamp_to_ns,
)

pytestmark = pytest.mark.ros


def _overrides(parameters):
    return [rclpy.parameter.Parameter(k, value=v) for k, v in parameters.items()]


class Harness:
    """The sim node (and optionally the expert node) plus a peer node that talks to them."""

    def __init__(self, sim_parameters, expert_parameters=None):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.sim = SimNode(context=self.context, parameter_overrides=_overrides(sim_parameters))
        self.nodes = [self.sim]
        if expert_parameters is not None:
            self.expert = ScriptedExpertNode(
                context=self.context, parameter_overrides=_overrides(expert_parameters)
            )
            self.nodes.append(self.expert)
        self.peer = Node("sim_test_peer", context=self.context)
        self.clock, self.status, self.images = [], [], {}
        self.joints = {"left": [], "right": []}
        self.peer.create_subscription(Clock, "/clock", self.clock.append, 10)
        self.peer.create_subscription(EpisodeStatus, "/sim/episode_status", self.status.append, 10)
        for side in self.joints:
            self.peer.create_subscription(
                JointState, f"/follower_{side}/joint_states", self.joints[side].append, 10
            )
        for cam in self.sim.cameras:
            self.images[cam] = []
            self.peer.create_subscription(
                Image, f"/cameras/{cam}/image_raw", self.images[cam].append, 10
            )
        self.commands = {
            side: self.peer.create_publisher(
                Float64MultiArray, f"/follower_{side}/commands/joint_positions", 10
            )
            for side in self.joints
        }
        self.reset_client = self.peer.create_client(ResetEpisode, "/sim/reset")
        self.executor = SingleThreadedExecutor(context=self.context)
        for node in [*self.nodes, self.peer]:
            self.executor.add_node(node)

    def spin_until(self, predicate, timeout=10.0, each=None):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if each is not None:
                each()
            self.executor.spin_once(timeout_sec=0.01)
            if predicate():
                return True
        return False

    def reset(self, seed):
        assert self.reset_client.wait_for_service(timeout_sec=5.0)
        future = self.reset_client.call_async(ResetEpisode.Request(seed=seed, use_seed=True))
        assert self.spin_until(future.done, timeout=5.0)
        return future.result()

    def latest_positions(self, side):
        return joint_positions_from_msg(self.joints[side][-1], JOINT_NAMES)

    def close(self):
        self.executor.shutdown()
        for node in [*self.nodes, self.peer]:
            node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def harness():
    h = Harness(
        {
            "task": "transfer_cube",
            "seed": 3,
            "render_height": 48,
            "render_width": 64,
            "cameras": ["cam_high", "cam_left_wrist"],
            "camera_rate": 25.0,
            "real_time_factor": 0.0,
            "episode_length": 0,
        }
    )
    yield h
    h.close()


def test_publishes_clock_joint_states_images_and_status(harness):
    h = harness
    assert h.spin_until(lambda: len(h.status) > 20 and all(h.images.values()))
    clock = [stamp_to_ns(c.clock) for c in h.clock]
    assert all(b > a for a, b in itertools.pairwise(clock)), "sim time must increase"
    assert clock[1] - clock[0] == 20_000_000  # 50 Hz
    js = h.joints["left"][-1]
    assert list(js.name) == list(JOINT_NAMES) and len(js.velocity) == 8
    assert stamp_to_ns(js.header.stamp) <= clock[-1]
    status = h.status[-1]
    assert status.task == "transfer_cube" and status.seed == 3 and status.max_reward == 4
    assert len(status.object_poses) == 7
    for cam, frames in h.images.items():
        image = image_from_msg(frames[-1])
        assert image.shape == (48, 64, 3) and frames[-1].header.frame_id == cam
        assert stamp_to_ns(frames[-1].header.stamp) % 40_000_000 == 0  # every 2nd step
    # object poses from the seed, as the pure env draws them
    env = AlohaSimEnv("transfer_cube", render_size=None)
    env.reset(3)
    np.testing.assert_allclose(h.status[0].object_poses[:2], env.object_poses()[:2])


def test_command_moves_the_arm_and_nan_is_rejected_while_holding(harness):
    h = harness
    assert h.spin_until(lambda: h.joints["left"])
    target = h.latest_positions("left")[:7].copy()
    target[0] = 0.4
    assert h.spin_until(
        lambda: abs(h.latest_positions("left")[0] - 0.4) < 0.02,
        each=lambda: h.commands["left"].publish(command_msg(target)),
    )
    settled = len(h.status) + 100
    assert h.spin_until(lambda: len(h.status) > settled)
    held = h.latest_positions("left")
    bad = target.copy()
    bad[2] = np.nan
    out_of_range = target.copy()
    out_of_range[1] = -3.0
    start = len(h.status)
    sent = []

    def publish_bad():
        h.commands["left"].publish(command_msg(bad if len(sent) % 2 else out_of_range))
        sent.append(1)

    assert h.spin_until(lambda: h.sim.rejected["left"] >= 10, each=publish_bad)
    assert h.spin_until(lambda: len(h.status) > start + 25)
    np.testing.assert_allclose(h.latest_positions("left"), held, atol=5e-3)
    assert h.sim.env.rejected_commands["left"] == h.sim.rejected["left"]


def test_reset_service_redraws_from_the_seed_and_keeps_clock_monotonic(harness):
    h = harness
    assert h.spin_until(lambda: len(h.status) > 10)
    before = stamp_to_ns(h.clock[-1].clock)
    response = h.reset(11)
    assert response.success and response.seed == 11 and "11" in response.message
    assert h.spin_until(lambda: h.status[-1].seed == 11)
    env = AlohaSimEnv("transfer_cube", render_size=None)
    env.reset(11)
    first = next(s for s in h.status if s.seed == 11)
    assert first.step <= 2
    np.testing.assert_allclose(first.object_poses[:2], env.object_poses()[:2])
    assert h.spin_until(lambda: stamp_to_ns(h.clock[-1].clock) > before)
    random_seed = h.reset_client.call_async(ResetEpisode.Request(seed=0, use_seed=False))
    assert h.spin_until(random_seed.done)
    assert random_seed.result().success


def test_bad_task_parameter_fails_naming_the_known_tasks():
    proc = subprocess.run(
        [sys.executable, "-m", "aloha_sim.nodes.sim_node", "--ros-args", "-p", "task:=stack"],
        env=dict(os.environ), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "task='stack'" in proc.stderr and "transfer_cube" in proc.stderr


def test_expert_node_drives_the_sim_to_success_over_dds():
    h = Harness(
        {
            "task": "transfer_cube",
            "seed": 1,
            "cameras": ["cam_high"],
            "camera_rate": 0.0,
            "real_time_factor": 6.0,
            "episode_length": 400,
        },
        expert_parameters={"task": "transfer_cube", "use_sim_time": True},
    )
    try:
        assert h.spin_until(lambda: h.status and h.status[-1].step >= 400, timeout=60)
        assert h.status[-1].success, f"reward {h.status[-1].reward}"
        assert h.expert.published > 300 and h.sim.rejected == {"left": 0, "right": 0}
        # a reset restarts the expert's plan
        h.reset(2)
        assert h.spin_until(lambda: h.expert.restarts >= 2, timeout=10)
    finally:
        h.close()


def test_real_time_factor_one_is_no_faster_than_the_wall_clock():
    h = Harness({"camera_rate": 0.0, "real_time_factor": 1.0})
    try:
        assert h.spin_until(lambda: h.clock)
        wall_start, sim_start = time.monotonic(), stamp_to_ns(h.clock[-1].clock)
        h.spin_until(lambda: False, timeout=1.0)
        wall = time.monotonic() - wall_start
        sim = (stamp_to_ns(h.clock[-1].clock) - sim_start) / 1e9
        assert 0.0 < sim <= wall + 0.05, f"sim {sim:.3f} s in {wall:.3f} s of wall time"
        assert not h.images  # camera_rate 0: no image topics
    finally:
        h.close()


def test_expert_node_defaults_to_sim_time_unless_told():
    from aloha_sim.nodes.scripted_expert_node import _with_sim_time_default

    assert _with_sim_time_default(["x"])[-2:] == ["-p", "use_sim_time:=true"]
    given = ["x", "--ros-args", "-p", "use_sim_time:=false"]
    assert _with_sim_time_default(given) == given
