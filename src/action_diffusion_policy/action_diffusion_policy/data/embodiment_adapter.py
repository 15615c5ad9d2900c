"""Thin adapter over ``unified_action_space`` for the bag tools: which topics a robot has, and
how its joint states and joint commands become 128-slot unified vectors.

Kept in one place so that an API change on the unified_action_space side touches one file.
Every answer comes from the ``Embodiment`` (its YAML): cameras, arms, topics, the mapping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from unified_action_space import CAMERA_TYPES, Embodiment, load_embodiment

IMAGE_TYPE = CAMERA_TYPES["raw"]
COMPRESSED_TYPE = CAMERA_TYPES["compressed"]
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
UNIFIED_STATE_TYPE = "action_diffusion_msgs/msg/UnifiedState"
EPISODE_STATUS_TYPE = "action_diffusion_msgs/msg/EpisodeStatus"
EPISODE_STATUS_TOPIC = "/sim/episode_status"
UNIFIED_STATE_TOPIC = "/unified_state"


def load(name_or_path: str) -> Embodiment:
    """``unified_action_space.load_embodiment`` (with kinematics: the state fills EEF slots)."""
    return load_embodiment(name_or_path)


def camera_topics(embodiment: Embodiment) -> dict[str, str]:
    """camera name -> the topic its driver publishes, from the embodiment's ``cameras``."""
    return embodiment.camera_topics


def camera_name_from_topic(topic: str) -> str:
    """``/cameras/cam_high/image_raw[/compressed]`` -> ``cam_high``."""
    parts = [p for p in topic.split("/") if p]
    while parts and parts[-1] in ("compressed", "image_raw", "image", "image_rect_color"):
        parts.pop()
    return parts[-1] if parts else topic.strip("/")


def record_topics(
    embodiment: Embodiment,
    compressed_images: bool = False,
    unified_state_topic: str | None = UNIFIED_STATE_TOPIC,
    episode_status_topic: str | None = EPISODE_STATUS_TOPIC,
    cameras: Sequence[str] | None = None,
) -> dict[str, str]:
    """topic -> type of everything a demonstration needs: cameras, joint states, commands,
    unified state and the sim's episode status."""
    topics: dict[str, str] = {}
    for name, camera in embodiment.cameras.items():
        if cameras is not None and name not in cameras:
            continue
        topic, msgtype = camera.subscription(compressed_images)
        topics[topic] = msgtype
    for arm in embodiment.arms:
        for topic in arm.joint_state_topics:
            topics[topic] = JOINT_STATE_TYPE
        for output in arm.command_outputs:
            if not output.is_action:  # an action goal is no topic a bag can record
                topics[output.topic] = output.type
    if unified_state_topic:
        topics[unified_state_topic] = UNIFIED_STATE_TYPE
    if episode_status_topic:
        topics[episode_status_topic] = EPISODE_STATUS_TYPE
    return topics


# --------------------------------------------------------------------------------------------
# Message contents -> plain arrays (messages are rosbags' deserialized objects or rclpy messages;
# both have the same field names).


def joint_state_arrays(msg) -> tuple[list[str], np.ndarray, np.ndarray]:
    names = list(msg.name)
    pos = np.asarray(msg.position, dtype=np.float64)
    vel = np.asarray(msg.velocity, dtype=np.float64)
    if vel.shape != pos.shape:
        vel = np.zeros_like(pos)
    return names, pos, vel


def command_positions(msg, msgtype: str, joint_names: Sequence[str]) -> np.ndarray:
    """Commanded joint positions in ``joint_names`` (driver) order from any command type."""
    short = msgtype.split("/")[-1]
    if short == "Float64MultiArray":
        values = np.asarray(msg.data, dtype=np.float64)
        if len(values) != len(joint_names):
            raise ValueError(
                f"command has {len(values)} values, the embodiment expects {len(joint_names)} "
                f"({', '.join(joint_names)})"
            )
        return values
    if short == "JointState":
        names, pos = list(msg.name), np.asarray(msg.position, dtype=np.float64)
    elif short == "JointTrajectory":
        if not msg.points:
            raise ValueError("JointTrajectory command has no points")
        names, pos = list(msg.joint_names), np.asarray(msg.points[0].positions, dtype=np.float64)
    else:
        raise ValueError(f"unsupported command type {msgtype}")
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in joint_names if n not in index]
    if missing:
        raise ValueError(f"command lacks joints {missing} (it has {names})")
    return pos[[index[n] for n in joint_names]]


@dataclass
class UnifiedMapper:
    """Joint states / commands of one embodiment -> (128,) unified vectors."""

    embodiment: Embodiment

    @property
    def name(self) -> str:
        return self.embodiment.name

    @property
    def control_frequency(self) -> float:
        return self.embodiment.control_frequency

    @property
    def state_mask(self) -> np.ndarray:
        return self.embodiment.state_mask

    @property
    def action_slots(self) -> np.ndarray:
        return self.embodiment.action_slots.astype(np.int64)

    @property
    def arms(self):
        return self.embodiment.arms

    def state(self, joint_states: Mapping[str, tuple]) -> np.ndarray:
        values, _mask = self.embodiment.state_from_joint_states(dict(joint_states))
        return np.asarray(values, dtype=np.float32)

    def action_from_commands(self, commands: Mapping[str, np.ndarray]) -> np.ndarray:
        """{arm: commanded positions in driver order} -> (128,) unified action."""
        return np.asarray(self.embodiment.actions_from_commands(dict(commands)), np.float32)
