"""Message <-> array conversions of the sim nodes, each small and round-trip tested.

Stamps and JointState messages are built by ``unified_action_space.conversions`` (the one module
for those messages; ``ns_to_stamp`` / ``stamp_to_ns`` are imported from there).
Message classes only; no rclpy graph objects, so the tests run without a ROS context.
"""

from __future__ import annotations

import array
from dataclasses import dataclass

import numpy as np
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import Float64MultiArray

from action_diffusion_msgs.msg import EpisodeStatus
from unified_action_space.conversions import ns_to_stamp, stamp_to_ns


def clock_msg(ns: int) -> Clock:
    return Clock(clock=ns_to_stamp(ns))


def command_msg(values: np.ndarray) -> Float64MultiArray:
    return Float64MultiArray(data=np.asarray(values, dtype=np.float64).tolist())


def command_from_msg(msg: Float64MultiArray) -> np.ndarray:
    return np.asarray(msg.data, dtype=np.float64)


def image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """(H, W, 3) uint8 -> sensor_msgs/Image rgb8."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    msg = Image()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    # array.array takes the fast path of the generated setter (a list would be checked per byte).
    msg.data = array.array("B", np.ascontiguousarray(rgb).tobytes())
    return msg


def image_from_msg(msg: Image) -> np.ndarray:
    if msg.encoding != "rgb8":
        raise ValueError(f"expected an rgb8 image, got encoding {msg.encoding!r}")
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    return rows[:, : msg.width * 3].reshape(msg.height, msg.width, 3).copy()


@dataclass(frozen=True)
class Status:
    """The fields of an EpisodeStatus as plain values."""

    task: str
    seed: int
    step: int
    reward: int
    max_reward: int
    success: bool
    object_poses: np.ndarray
    stamp_ns: int = 0


def episode_status_msg(status: Status) -> EpisodeStatus:
    msg = EpisodeStatus()
    msg.header.stamp = ns_to_stamp(status.stamp_ns)
    msg.task = status.task
    msg.seed = int(status.seed)
    msg.step = int(status.step)
    msg.reward = int(status.reward)
    msg.max_reward = int(status.max_reward)
    msg.success = bool(status.success)
    msg.object_poses = np.asarray(status.object_poses, dtype=np.float64).tolist()
    return msg


def status_from_msg(msg: EpisodeStatus) -> Status:
    return Status(
        task=msg.task,
        seed=int(msg.seed),
        step=int(msg.step),
        reward=int(msg.reward),
        max_reward=int(msg.max_reward),
        success=bool(msg.success),
        object_poses=np.asarray(msg.object_poses, dtype=np.float64),
        stamp_ns=stamp_to_ns(msg.header.stamp),
    )
