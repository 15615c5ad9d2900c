"""Round trips of the sim nodes' message conversions (message classes only, no ROS graph)."""

import numpy as np
import pytest

pytest.importorskip("rclpy")

from aloha_sim.env import JOINT_NAMES
from aloha_sim.nodes.conversions import (
    Status,
    clock_msg,
    command_from_msg,
    command_msg,
    episode_status_msg,
    image_from_msg,
    image_msg,
    status_from_msg,
)
from unified_action_space.conversions import (
    joint_positions_from_msg,
    joint_state_to_msg,
    ns_to_stamp,
    stamp_to_ns,
)


def test_stamp_and_clock():
    ns = 12_345_678_901
    assert stamp_to_ns(ns_to_stamp(ns)) == ns
    assert stamp_to_ns(clock_msg(ns).clock) == ns


def test_joint_state_round_trip_reorders_by_name():
    q = np.arange(8) * 0.1
    msg = joint_state_to_msg(JOINT_NAMES, q, -q, 7)
    assert list(msg.name) == list(JOINT_NAMES) and stamp_to_ns(msg.header.stamp) == 7
    np.testing.assert_allclose(joint_positions_from_msg(msg, JOINT_NAMES), q)
    shuffled = list(reversed(JOINT_NAMES))
    np.testing.assert_allclose(joint_positions_from_msg(msg, shuffled), q[::-1])
    assert joint_positions_from_msg(msg, [*JOINT_NAMES, "gripper"]) is None


def test_command_round_trip():
    values = np.array([0.1, -0.2, 0.3, 0.0, 0.5, -0.6, 0.04])
    np.testing.assert_array_equal(command_from_msg(command_msg(values)), values)


def test_image_round_trip_and_padded_rows():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    msg = image_msg(rgb, 3, "cam_high")
    assert (msg.encoding, msg.height, msg.width, msg.step) == ("rgb8", 6, 5, 15)
    np.testing.assert_array_equal(image_from_msg(msg), rgb)
    padded = np.zeros((6, 16), dtype=np.uint8)
    padded[:, :15] = rgb.reshape(6, 15)
    msg.step, msg.data = 16, padded.tobytes()
    np.testing.assert_array_equal(image_from_msg(msg), rgb)
    with pytest.raises(ValueError, match="uint8"):
        image_msg(rgb.astype(np.float32), 0, "x")


def test_episode_status_round_trip():
    status = Status("insertion", 42, 17, 2, 4, False, np.arange(14, dtype=float), 99)
    back = status_from_msg(episode_status_msg(status))
    assert (back.task, back.seed, back.step, back.reward, back.max_reward, back.success,
            back.stamp_ns) == ("insertion", 42, 17, 2, 4, False, 99)  # fmt: skip
    np.testing.assert_array_equal(back.object_poses, status.object_poses)
