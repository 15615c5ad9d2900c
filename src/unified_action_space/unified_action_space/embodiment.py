"""Robot embodiments: which joint fills which unified slot, limits, topics, and the mapping.

An embodiment is a YAML file (shipped ones in ``config/embodiments/``; users pass a path for
their own). Loading validates everything and precomputes index arrays, so the hot paths
(``state_from_joint_states``, ``commands_from_actions``) are a few numpy gathers per arm with no
per-joint Python loop.

YAML schema (every key is checked; unknown keys are errors so typos surface)::

    name: aloha                      # optional, defaults to the file stem
    description: free text
    control_frequency: 50.0          # Hz
    kinematics:                      # optional: fills the EEF pose slots by FK
      type: mujoco
      model_package: gym_aloha       # optional: model path is inside this Python package
      model: assets/bimanual_viperx_transfer_cube.xml
      arms:
        left: {joint_prefix: vx300s_left/, base_body: vx300s_left,
               eef_body: vx300s_left/gripper_link}
    arms:
      left:                          # "left" or "right"; a single-arm robot uses "right"
        joint_state_topic: /follower_left/joint_states
        command_topic: /follower_left/commands/joint_positions
        command_type: std_msgs/msg/Float64MultiArray
        command_joint_names: [waist, ..., left_finger]   # driver order
        # or, for a driver with several inputs (arm group + gripper), each in its own type:
        # command_outputs:
        #   - {topic: /follower_left/commands/joint_group,
        #      type: interbotix_xs_msgs/msg/JointGroupCommand, name: arm, joints: [waist, ...]}
        #   - {topic: /follower_left/commands/joint_single,
        #      type: interbotix_xs_msgs/msg/JointSingleCommand, joints: [gripper]}
        # (OUTPUT_TYPES lists the types; CommandOutput documents each key)
        # extra_joint_state_topics: [...]  # more JointState topics merged into the arm's state
        # enable_topic: /enable_flag        # std_msgs/Bool true when the executor is enabled
        joints:
          waist: {position_slot: left_arm_joint_0_pos, velocity_slot: left_arm_joint_0_vel,
                  position_limits: [-3.14158, 3.14158], velocity_limit: 3.14159}
          left_finger: {position_slot: left_gripper_open, velocity_slot: left_gripper_open_vel,
                        gripper_range: [0.01844, 0.058],   # raw value mapped to [0, 1]
                        position_limits: [0.021, 0.057], velocity_limit: 1.0}
    cameras:                         # optional: camera name (as checkpoints and bags call it)
      cam_high: {topic: /cameras/cam_high/image_raw, type: raw}   # -> its driver's topic
    # type: raw (sensor_msgs/msg/Image on `topic`; image_transport adds `<topic>/compressed`)
    #       or compressed (the driver publishes only sensor_msgs/msg/CompressedImage on `topic`)

Units: joint positions rad (m for prismatic joints), velocities rad/s (m/s); the gripper opening
slot holds ``(raw - lo) / (hi - lo)`` and its velocity slot ``raw_velocity / (hi - lo)``.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from unified_action_space import layout
from unified_action_space.kinematics import (
    KinematicsError,
    MujocoArmChain,
    MujocoKinematics,
    resolve_model_path,
)

PACKAGE = "unified_action_space"
# The command message types an arm can be driven with (ArmConfig.command_type).
FLOAT64_ARRAY = "std_msgs/msg/Float64MultiArray"
JOINT_TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
JOINT_STATE = "sensor_msgs/msg/JointState"
COMMAND_TYPES = (FLOAT64_ARRAY, JOINT_TRAJECTORY, JOINT_STATE)
# Vendor interfaces a command output may also use (``command_outputs``). Their packages come from
# the robot PC's ROS installation; src/driver_standins/ builds test stand-ins where they are not.
JOINT_GROUP_COMMAND = "interbotix_xs_msgs/msg/JointGroupCommand"  # Interbotix xs_sdk arm group
JOINT_SINGLE_COMMAND = "interbotix_xs_msgs/msg/JointSingleCommand"  # Interbotix gripper (rad)
GRIPPER_COMMAND_ACTION = "control_msgs/action/GripperCommand"  # Robotiq (UR), Franka Hand
OUTPUT_TYPES = (*COMMAND_TYPES, JOINT_GROUP_COMMAND, JOINT_SINGLE_COMMAND,
                GRIPPER_COMMAND_ACTION)  # fmt: skip
# Types a ros2_control controller takes (forward_command_controller, joint_trajectory_controller).
CONTROLLER_TYPES = (FLOAT64_ARRAY, JOINT_TRAJECTORY)
ARM_NAMES = ("right", "left")
# Camera ``type`` in the YAML -> the message type the driver publishes on the camera's topic.
CAMERA_TYPES = {
    "raw": "sensor_msgs/msg/Image",
    "compressed": "sensor_msgs/msg/CompressedImage",
}
_CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # a ROS name token: /cameras/<name>/...
_TOPIC = re.compile(r"(/[A-Za-z0-9_]+)+")  # an absolute ROS topic name


class EmbodimentConfigError(ValueError):
    """An embodiment config is unknown or invalid; the message names the file and key."""


class JointStateError(ValueError):
    """A joint state cannot be mapped: missing joint, non-finite value, or length mismatch."""

    def __init__(self, message: str, arm: str | None = None, joint: str | None = None):
        super().__init__(message)
        self.arm = arm
        self.joint = joint


# --------------------------------------------------------------------------- config dataclasses


def _pair(value: Any, where: str, what: str) -> tuple[float, float]:
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise EmbodimentConfigError(
            f"{where}: {what} must be [lower, upper] numbers, got {value!r}"
        )
    lo, hi = float(value[0]), float(value[1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise EmbodimentConfigError(f"{where}: {what} must be finite, got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class JointConfig:
    """One driver joint and the unified slots it fills.

    Attributes:
        name: joint name exactly as the driver publishes it in sensor_msgs/JointState.
        position_slot: unified slot index of its position (kind joint_pos or gripper_pos).
        velocity_slot: unified slot index of its velocity (the position slot + 15) or None.
        position_limits: (lower, upper) in raw driver units (rad or m); commands are clipped here.
        velocity_limit: max |velocity| in raw units per second.
        gripper_range: (closed, open) raw values mapped to [0, 1]; only for ``*_gripper_open``.
        where: "file: key" prefix for error messages.
    """

    name: str
    position_slot: int
    velocity_slot: int | None
    position_limits: tuple[float, float]
    velocity_limit: float
    gripper_range: tuple[float, float] | None = None
    where: str = "<joint>"

    def __post_init__(self) -> None:
        w = self.where
        pos_kind = layout.slot_kind(self.position_slot)
        if pos_kind not in layout.POSITION_KINDS:
            raise EmbodimentConfigError(
                f"{w}.position_slot: {layout.slot_name(self.position_slot)!r} is a {pos_kind} slot;"
                f" a joint position goes into a {' or '.join(sorted(layout.POSITION_KINDS))} slot"
            )
        if self.velocity_slot is not None:
            vel_kind = layout.slot_kind(self.velocity_slot)
            twin = self.position_slot + layout.VELOCITY_OFFSET
            if vel_kind not in layout.VELOCITY_KINDS or self.velocity_slot != twin:
                raise EmbodimentConfigError(
                    f"{w}.velocity_slot: {layout.slot_name(self.velocity_slot)!r} is a {vel_kind} "
                    f"slot; the velocity of {layout.slot_name(self.position_slot)!r} goes into "
                    f"{layout.slot_name(twin)!r}"
                )
        lo, hi = self.position_limits
        if not lo < hi:
            raise EmbodimentConfigError(
                f"{w}.position_limits: lower must be < upper, got [{lo}, {hi}]"
            )
        if not (math.isfinite(self.velocity_limit) and self.velocity_limit > 0):
            raise EmbodimentConfigError(
                f"{w}.velocity_limit: must be a positive finite number, got {self.velocity_limit}"
            )
        is_open_slot = layout.slot_name(self.position_slot).endswith("_gripper_open")
        if is_open_slot and self.gripper_range is None:
            raise EmbodimentConfigError(
                f"{w}.gripper_range: missing; {layout.slot_name(self.position_slot)!r} is "
                "normalized to [0, 1], give the raw [closed, open] values"
            )
        if not is_open_slot and self.gripper_range is not None:
            raise EmbodimentConfigError(
                f"{w}.gripper_range: only a '*_gripper_open' slot is normalized; "
                f"{layout.slot_name(self.position_slot)!r} stays in SI units, remove the key"
            )
        if self.gripper_range is not None:
            g0, g1 = self.gripper_range
            if abs(g1 - g0) < 1e-9:
                raise EmbodimentConfigError(
                    f"{w}.gripper_range: zero width [{g0}, {g1}]; closed and open must differ"
                )

    @property
    def offset(self) -> float:
        """unified = (raw - offset) / scale."""
        return self.gripper_range[0] if self.gripper_range else 0.0

    @property
    def scale(self) -> float:
        return (self.gripper_range[1] - self.gripper_range[0]) if self.gripper_range else 1.0


@dataclass(frozen=True)
class CommandOutput:
    """One message stream (or action) the executor drives a driver with.

    Attributes:
        topic: topic (or, for an action type, the action name) the driver listens on.
        type: one of ``OUTPUT_TYPES``.
        joints: the arm's joints this output carries, in the driver's order.
        name: the driver's name for what is commanded: the JointGroupCommand group (``arm``) or
            the JointSingleCommand joint (``gripper``; default: the one joint's name).
        velocity, effort: JointState only: constant values sent per joint (PiPER reads the
            gripper row of ``velocity`` as the speed percentage and of ``effort`` as the
            gripper force in N).
        stream: JointTrajectory only: send the rest of the chunk as a multi-point trajectory
            (start on receipt) for the controller to interpolate at its own rate.
        max_effort: GripperCommand only: the goal's ``max_effort`` (N), > 0.
        controller_manager, controller: ros2_control only: before commanding, the executor asks
            ``<controller_manager>/list_controllers`` that ``controller`` is active and claims
            these joints.
        min_interval: minimum seconds between two goals (actions only).
        names: JointState / JointTrajectory only: the joint names written into the message,
            when the driver version expects other names than the state's (default: joints).
    """

    topic: str
    type: str
    joints: tuple[str, ...]
    name: str = ""
    velocity: tuple[float, ...] | None = None
    effort: tuple[float, ...] | None = None
    stream: bool = False
    max_effort: float = 0.0
    controller_manager: str = ""
    controller: str = ""
    min_interval: float = 0.1
    names: tuple[str, ...] | None = None
    where: str = "<output>"

    def __post_init__(self) -> None:
        w = self.where
        if not isinstance(self.topic, str) or not self.topic:
            raise EmbodimentConfigError(f"{w}.topic: must be a topic name, got {self.topic!r}")
        if self.type not in OUTPUT_TYPES:
            raise EmbodimentConfigError(
                f"{w}.type: {self.type!r} not supported; use one of {list(OUTPUT_TYPES)}"
            )
        if not self.joints:
            raise EmbodimentConfigError(f"{w}.joints: missing or empty")
        single = (JOINT_SINGLE_COMMAND, GRIPPER_COMMAND_ACTION)
        if self.type in single and len(self.joints) != 1:
            raise EmbodimentConfigError(
                f"{w}.joints: a {self.type} carries exactly one joint, got {list(self.joints)}"
            )
        if self.type == JOINT_GROUP_COMMAND and not self.name:
            raise EmbodimentConfigError(
                f"{w}.name: missing; a JointGroupCommand names the driver's joint group "
                "(e.g. arm)"
            )
        for key in ("velocity", "effort"):
            values = getattr(self, key)
            if values is None:
                continue
            if self.type != JOINT_STATE:
                raise EmbodimentConfigError(f"{w}.{key}: only a {JOINT_STATE} output fills it")
            if len(values) != len(self.joints):
                raise EmbodimentConfigError(
                    f"{w}.{key}: {len(values)} values for {len(self.joints)} joints "
                    f"{list(self.joints)}"
                )
        if self.stream and self.type != JOINT_TRAJECTORY:
            raise EmbodimentConfigError(f"{w}.stream: only a {JOINT_TRAJECTORY} output streams")
        if self.type == GRIPPER_COMMAND_ACTION:
            if not (math.isfinite(self.max_effort) and self.max_effort > 0):
                raise EmbodimentConfigError(
                    f"{w}.max_effort: a GripperCommand goal needs a force limit > 0 N, got "
                    f"{self.max_effort!r}"
                )
        elif self.max_effort:
            raise EmbodimentConfigError(f"{w}.max_effort: only a GripperCommand output uses it")
        if bool(self.controller) != bool(self.controller_manager):
            raise EmbodimentConfigError(
                f"{w}: give controller and controller_manager together (the controller is "
                "checked through <controller_manager>/list_controllers)"
            )
        if self.controller and self.type not in CONTROLLER_TYPES:
            raise EmbodimentConfigError(
                f"{w}.controller: a {self.type} output is not a ros2_control controller's"
            )
        if not (math.isfinite(self.min_interval) and self.min_interval >= 0):
            raise EmbodimentConfigError(f"{w}.min_interval: must be >= 0 s")
        if self.names is not None:
            if self.type not in (JOINT_STATE, JOINT_TRAJECTORY):
                raise EmbodimentConfigError(f"{w}.names: a {self.type} carries no joint names")
            if len(self.names) != len(self.joints):
                raise EmbodimentConfigError(
                    f"{w}.names: {len(self.names)} names for {len(self.joints)} joints"
                )

    @property
    def message_joint_names(self) -> tuple[str, ...]:
        return self.joints if self.names is None else self.names

    @property
    def is_action(self) -> bool:
        return "/action/" in self.type

    @property
    def driver_name(self) -> str:
        """JointGroupCommand / JointSingleCommand ``name``."""
        return self.name or self.joints[0]


@dataclass(frozen=True)
class ArmConfig:
    """One arm: topics, command format, and its joints.

    Attributes:
        name: "left" or "right" (a single-arm robot uses "right", as in RDT).
        joint_state_topic: sensor_msgs/JointState topic the driver publishes.
        extra_joint_state_topics: more JointState topics whose joints complete the arm's state
            (FR3: the fingers on ``franka_gripper/joint_states``); each is checked for
            staleness on its own.
        command_joint_names: the commanded joints, in the order of one command row.
        joints: every joint the state needs (all are required in each JointState).
        command_outputs: the messages (or actions) the commands go out on; the short form
            ``command_topic`` + ``command_type`` is one output carrying every commanded joint.
        enable_topic: std_msgs/Bool topic that gets ``true`` when the executor is enabled
            (PiPER's ``enable_flag``: its driver ignores commands until enabled).
        joint_name_variants: the same joints as other driver versions name them (one list per
            version, in ``joints`` order): a JointState that lacks the joints' own names is
            read by the first variant it has all names of (PiPER: joint0..joint6).
        where: "file: key" prefix for error messages.
    """

    name: str
    joint_state_topic: str
    command_joint_names: tuple[str, ...]
    joints: tuple[JointConfig, ...]
    command_outputs: tuple[CommandOutput, ...]
    extra_joint_state_topics: tuple[str, ...] = ()
    enable_topic: str = ""
    joint_name_variants: tuple[tuple[str, ...], ...] = ()
    where: str = "<arm>"

    def __post_init__(self) -> None:
        w = self.where
        if self.name not in ARM_NAMES:
            raise EmbodimentConfigError(
                f"{w}: arm name {self.name!r} not allowed; use one of {list(ARM_NAMES)}"
            )
        for value in (self.joint_state_topic, *self.extra_joint_state_topics):
            if not isinstance(value, str) or not value:
                raise EmbodimentConfigError(
                    f"{w}.joint_state_topic: must be a topic name, got {value!r}"
                )
        for variant in self.joint_name_variants:
            if len(variant) != len(self.joints) or len(set(variant)) != len(variant):
                raise EmbodimentConfigError(
                    f"{w}.joint_name_variants: {list(variant)} must name each of the "
                    f"{len(self.joints)} joints {[j.name for j in self.joints]} once, in order"
                )
        if len(set(self.joint_state_topics)) != len(self.joint_state_topics):
            raise EmbodimentConfigError(f"{w}.extra_joint_state_topics: a topic is listed twice")
        if not self.joints:
            raise EmbodimentConfigError(f"{w}.joints: at least one joint is needed")
        names = [j.name for j in self.joints]
        for joint in self.joints:
            side = layout.slot_side(joint.position_slot)
            if side != self.name:
                raise EmbodimentConfigError(
                    f"{joint.where}.position_slot: {layout.slot_name(joint.position_slot)!r} "
                    f"belongs to the {side} arm, not to arm {self.name!r}"
                )
        if not self.command_joint_names:
            raise EmbodimentConfigError(f"{w}.command_joint_names: missing or empty")
        seen: set[str] = set()
        for name in self.command_joint_names:
            if name not in names:
                raise EmbodimentConfigError(
                    f"{w}.command_joint_names: {name!r} is not one of the arm's joints {names}"
                )
            if name in seen:
                raise EmbodimentConfigError(f"{w}.command_joint_names: {name!r} listed twice")
            seen.add(name)
        if not self.command_outputs:
            raise EmbodimentConfigError(f"{w}.command_outputs: at least one output is needed")
        carried: dict[str, str] = {}
        for out in self.command_outputs:
            for joint in out.joints:
                if joint not in seen:
                    raise EmbodimentConfigError(
                        f"{out.where}.joints: {joint!r} is not a commanded joint "
                        f"{list(self.command_joint_names)}"
                    )
                if joint in carried:
                    raise EmbodimentConfigError(
                        f"{out.where}.joints: {joint!r} is already sent on {carried[joint]}"
                    )
                carried[joint] = out.topic
        unsent = [n for n in self.command_joint_names if n not in carried]
        if unsent:
            raise EmbodimentConfigError(
                f"{w}.command_outputs: commanded joint(s) {unsent} go out on no output"
            )

    @property
    def joint_state_topics(self) -> tuple[str, ...]:
        """Every JointState topic the arm's state is merged from, the main one first."""
        return (self.joint_state_topic, *self.extra_joint_state_topics)

    @property
    def command_topic(self) -> str:
        """The first output's topic (the only one in the short form)."""
        return self.command_outputs[0].topic

    @property
    def command_type(self) -> str:
        return self.command_outputs[0].type

    def output_columns(self, output: CommandOutput) -> np.ndarray:
        """Where ``output``'s joints sit in a command row (``command_joint_names`` order)."""
        return np.array([self.command_joint_names.index(j) for j in output.joints], dtype=np.intp)

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    def joint(self, name: str) -> JointConfig:
        for j in self.joints:
            if j.name == name:
                return j
        raise KeyError(f"arm {self.name!r} has no joint {name!r}; joints: {self.joint_names}")

    @property
    def command_position_limits(self) -> np.ndarray:
        """(n_cmd, 2) raw [lower, upper] in command order."""
        return np.array([self.joint(n).position_limits for n in self.command_joint_names])

    @property
    def command_velocity_limits(self) -> np.ndarray:
        """(n_cmd,) raw velocity limits in command order."""
        return np.array([self.joint(n).velocity_limit for n in self.command_joint_names])


@dataclass(frozen=True)
class CameraConfig:
    """One camera of the robot: the topic its driver publishes and the message type there.

    Attributes:
        name: camera name as checkpoints, datasets and bags call it (e.g. "cam_high").
        topic: absolute topic of the driver's images.
        type: "raw" (sensor_msgs/msg/Image; image_transport's CompressedImage stream is
            ``<topic>/compressed``) or "compressed" (only CompressedImage, on ``topic``).
        where: "file: key" prefix for error messages.
    """

    name: str
    topic: str
    type: str = "raw"
    where: str = "<camera>"

    def __post_init__(self) -> None:
        w = self.where
        if not isinstance(self.name, str) or not _CAMERA_NAME.fullmatch(self.name):
            raise EmbodimentConfigError(
                f"{w}: camera name {self.name!r} is not a ROS name (letters, digits, '_', "
                "starting with a letter)"
            )
        if not isinstance(self.topic, str) or not _TOPIC.fullmatch(self.topic):
            raise EmbodimentConfigError(
                f"{w}.topic: {self.topic!r}; expected an absolute topic like "
                f"/cameras/{self.name}/image_raw"
            )
        if self.type not in CAMERA_TYPES:
            raise EmbodimentConfigError(
                f"{w}.type: {self.type!r} not supported; use one of {list(CAMERA_TYPES)}"
            )

    @property
    def message_type(self) -> str:
        """The message type on ``topic``."""
        return CAMERA_TYPES[self.type]

    def subscription(self, compressed: bool = False) -> tuple[str, str]:
        """(topic, message type) to subscribe to; ``compressed`` asks for a raw camera's
        image_transport stream ``<topic>/compressed`` (a compressed camera has only one)."""
        if self.type == "raw" and compressed:
            return f"{self.topic}/compressed", CAMERA_TYPES["compressed"]
        return self.topic, self.message_type


@dataclass(frozen=True)
class KinematicsConfig:
    """A MuJoCo model that gives each arm's end-effector pose in its base frame."""

    model_path: Path
    chains: Mapping[str, MujocoArmChain]  # arm name -> chain
    fk_joints: Mapping[str, tuple[str, ...]]  # arm name -> config joint names fed to FK


# --------------------------------------------------------------------------- the embodiment


class _ArmMap:
    """Precomputed index arrays of one arm for the hot paths."""

    def __init__(self, arm: ArmConfig):
        joints = arm.joints
        self.arm = arm
        self.name = arm.name
        self.joint_names = arm.joint_names
        self.pos_slots = np.array([j.position_slot for j in joints], dtype=np.intp)
        self.pos_offset = np.array([j.offset for j in joints])
        self.pos_scale = np.array([j.scale for j in joints])
        vel_cols = [i for i, j in enumerate(joints) if j.velocity_slot is not None]
        self.vel_cols = np.array(vel_cols, dtype=np.intp)
        self.vel_slots = np.array([joints[i].velocity_slot for i in vel_cols], dtype=np.intp)
        self.vel_scale = self.pos_scale[self.vel_cols]
        cmd_cols = [self.joint_names.index(n) for n in arm.command_joint_names]
        self.cmd_slots = self.pos_slots[cmd_cols]
        self.cmd_offset = self.pos_offset[cmd_cols]
        self.cmd_scale = self.pos_scale[cmd_cols]
        limits = arm.command_position_limits
        self.cmd_lower = limits[:, 0].copy()
        self.cmd_upper = limits[:, 1].copy()
        self.fk_cols = np.zeros(0, dtype=np.intp)
        self.fk_raw = np.zeros(0, dtype=np.intp)
        self.cmd_action_cols = np.zeros(0, dtype=np.intp)  # set by Embodiment
        # Where this arm's raw values sit in the embodiment's flat buffer (set by Embodiment).
        self.pos_span = slice(0, 0)
        self.vel_span = slice(0, 0)
        # JointState name order rarely changes: cache name tuple -> (position, velocity) gathers.
        self._name_cache: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}

    def gather_index(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        key = tuple(names)
        cached = self._name_cache.get(key)
        if cached is not None:
            return cached
        lookup = {n: i for i, n in enumerate(key)}
        if any(n not in lookup for n in self.joint_names):
            for variant in self.arm.joint_name_variants:  # another driver version's names
                if all(n in lookup for n in variant):
                    lookup = {n: lookup[v] for n, v in zip(self.joint_names, variant)}
                    break
        missing = [n for n in self.joint_names if n not in lookup]
        if missing:
            raise JointStateError(
                f"arm {self.name!r}: joint state lacks required joint(s) {missing} "
                f"(got {list(key)})",
                arm=self.name,
                joint=missing[0],
            )
        index = np.array([lookup[n] for n in self.joint_names], dtype=np.intp)
        if len(self._name_cache) > 64:  # a driver that shuffles names must not grow memory
            self._name_cache.clear()
        self._name_cache[key] = (index, index[self.vel_cols])
        return self._name_cache[key]


@dataclass(eq=False)
class Embodiment:
    """A validated robot embodiment and its vectorized unified-space mapping.

    Attributes:
        name: embodiment name (e.g. "aloha").
        control_frequency: Hz.
        arms: the arms, right first when both exist.
        description: free text from the YAML.
        source: the YAML file it came from (or "<dict>").
        kinematics: MuJoCo FK model or None (then EEF slots stay masked out).
        cameras: camera name -> ``CameraConfig``, in YAML order (empty: the robot lists none).

    Derived at construction:
        state_mask: (128,) bool, slots a full state fills (positions, velocities, EEF pose).
        action_slots: (k,) int, increasing: the commanded slots (joint positions + gripper).
        position_limits_unified: (k, 2) float64 [lower, upper] per action slot, unified units
            (the gripper's raw limits normalized and clipped to [0, 1]).
        max_velocity_unified: (k,) float64 max |velocity| per action slot, unified units / s.
    """

    name: str
    control_frequency: float
    arms: tuple[ArmConfig, ...]
    description: str = ""
    source: str = "<dict>"
    kinematics: KinematicsConfig | None = None
    cameras: Mapping[str, CameraConfig] = field(default_factory=dict)
    state_mask: np.ndarray = field(init=False, repr=False)
    action_slots: np.ndarray = field(init=False, repr=False)
    position_limits_unified: np.ndarray = field(init=False, repr=False)
    max_velocity_unified: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        w = self.source
        if not isinstance(self.name, str) or not self.name:
            raise EmbodimentConfigError(f"{w}: name must be a non-empty string, got {self.name!r}")
        freq = self.control_frequency
        if not isinstance(freq, int | float) or not math.isfinite(freq) or freq <= 0:
            raise EmbodimentConfigError(
                f"{w}: control_frequency must be a positive number of Hz, got {freq!r}"
            )
        self.control_frequency = float(freq)
        if not self.arms:
            raise EmbodimentConfigError(f"{w}: arms: at least one arm is needed")
        arm_names = [a.name for a in self.arms]
        if len(set(arm_names)) != len(arm_names):
            raise EmbodimentConfigError(f"{w}: arms: arm names repeat: {arm_names}")
        self.arms = tuple(sorted(self.arms, key=lambda a: ARM_NAMES.index(a.name)))
        for name, camera in self.cameras.items():
            if not isinstance(camera, CameraConfig) or camera.name != name:
                raise EmbodimentConfigError(
                    f"{w}: cameras.{name}: expected a CameraConfig named {name!r}, got {camera!r}"
                )
        self.cameras = dict(self.cameras)
        owner: dict[int, str] = {}
        for arm in self.arms:
            for joint in arm.joints:
                for key, slot in (("position_slot", joint.position_slot),
                                  ("velocity_slot", joint.velocity_slot)):  # fmt: skip
                    if slot is None:
                        continue
                    if slot in owner:
                        raise EmbodimentConfigError(
                            f"{joint.where}.{key}: slot {layout.slot_name(slot)!r} ({slot}) is "
                            f"already filled by {owner[slot]}; each slot takes one joint"
                        )
                    owner[slot] = f"arm {arm.name!r} joint {joint.name!r}"
        self._maps = tuple(_ArmMap(a) for a in self.arms)
        self._map_by_name = {m.name: m for m in self._maps}
        self._build_flat_layout()

        # Masks: positions always; velocities when the state carries them; EEF when FK runs.
        self._pos_mask = np.zeros(layout.NUM_SLOTS, dtype=bool)
        for m in self._maps:
            self._pos_mask[m.pos_slots] = True
        self._eef_slots = np.zeros(0, dtype=np.intp)
        self._fk_maps: tuple[_ArmMap, ...] = ()
        self._fk: MujocoKinematics | None = None
        if self.kinematics is not None:
            self._setup_kinematics(self.kinematics)
        self._vel_mask = self._pos_mask.copy()
        for m in self._maps:
            self._vel_mask[m.vel_slots] = True
        mask = self._vel_mask.copy()
        mask[self._eef_slots] = True
        self.state_mask = mask

        # Action side: commanded slots in increasing order, with unified limits.
        cmd_slots = np.concatenate([m.cmd_slots for m in self._maps])
        order = np.argsort(cmd_slots)
        self.action_slots = cmd_slots[order]
        a = np.concatenate([(m.cmd_lower - m.cmd_offset) / m.cmd_scale for m in self._maps])
        b = np.concatenate([(m.cmd_upper - m.cmd_offset) / m.cmd_scale for m in self._maps])
        lower, upper = np.minimum(a, b), np.maximum(a, b)  # a gripper range may run open->closed
        grip = np.isin(cmd_slots, [layout.slot_index(f"{s}_gripper_open") for s in ARM_NAMES])
        lower = np.where(grip, np.clip(lower, 0.0, 1.0), lower)
        upper = np.where(grip, np.clip(upper, 0.0, 1.0), upper)
        self.position_limits_unified = np.stack([lower, upper], axis=1)[order]
        vmax = np.concatenate([m.arm.command_velocity_limits / np.abs(m.cmd_scale)
                               for m in self._maps])  # fmt: skip
        self.max_velocity_unified = vmax[order]
        for m in self._maps:  # column of each commanded slot within action_slots
            m.cmd_action_cols = np.searchsorted(self.action_slots, m.cmd_slots)
        self._cmd_action_cols = np.concatenate([m.cmd_action_cols for m in self._maps])
        self._slot_lut_cache: dict[bytes, np.ndarray] = {}

    def _build_flat_layout(self) -> None:
        """One float64 buffer holds every arm's raw positions, then every arm's velocities, so
        scaling, the finite check and the scatter into the 128 slots are one op each."""
        start, info = 0, []
        for m in self._maps:
            m.pos_span = slice(start, start + len(m.joint_names))
            start = m.pos_span.stop
            info += [(m.name, n, "position") for n in m.joint_names]
        for m in self._maps:
            m.vel_span = slice(start, start + len(m.vel_cols))
            start = m.vel_span.stop
            info += [(m.name, m.joint_names[c], "velocity") for c in m.vel_cols]
        self._raw_size = start
        self._raw_info = info  # buffer index -> (arm, joint, quantity), for error messages
        maps = self._maps
        self._raw_slots = np.concatenate([m.pos_slots for m in maps] + [m.vel_slots for m in maps])
        scale = np.concatenate([m.pos_scale for m in maps] + [m.vel_scale for m in maps])
        offset = np.concatenate([m.pos_offset for m in maps] + [0 * m.vel_scale for m in maps])
        self._raw_gain = 1.0 / scale  # unified = raw * gain + bias
        self._raw_bias = -offset / scale
        # Commands: all arms' commanded slots side by side, split per arm at the end.
        self._cmd_slots = np.concatenate([m.cmd_slots for m in maps])
        self._cmd_scale = np.concatenate([m.cmd_scale for m in maps])
        self._cmd_offset = np.concatenate([m.cmd_offset for m in maps])
        self._cmd_lower = np.concatenate([m.cmd_lower for m in maps])
        self._cmd_upper = np.concatenate([m.cmd_upper for m in maps])
        bounds = np.cumsum([0] + [len(m.cmd_slots) for m in maps])
        self._cmd_spans = tuple(slice(a, b) for a, b in itertools.pairwise(bounds))
        self._cmd_info = [(m.name, n) for m in maps for n in m.arm.command_joint_names]

    def _setup_kinematics(self, kin: KinematicsConfig) -> None:
        chains, maps, eef = [], [], []
        for m in self._maps:
            if m.name not in kin.chains:
                continue
            cols = [m.joint_names.index(n) for n in kin.fk_joints[m.name]]
            m.fk_cols = np.array(cols, dtype=np.intp)
            m.fk_raw = m.pos_span.start + m.fk_cols  # into the flat buffer
            chains.append(kin.chains[m.name])
            maps.append(m)
            names = [f"{m.name}_eef_pos_{a}" for a in "xyz"]
            names += [f"{m.name}_eef_rot6d_{i}" for i in range(6)]
            eef.append([layout.slot_index(n) for n in names])
        try:
            self._fk = MujocoKinematics(kin.model_path, tuple(chains))
        except KinematicsError as exc:
            raise EmbodimentConfigError(f"{self.source}: {exc}") from exc
        self._fk_maps = tuple(maps)
        self._eef_slots = np.array(eef, dtype=np.intp).reshape(len(maps), 9)
        self._eef_slots_flat = self._eef_slots.ravel()
        self._fk_raw = np.concatenate([m.fk_raw for m in maps])

    # ------------------------------------------------------------------ look-ups

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arms)

    def arm(self, name: str) -> ArmConfig:
        try:
            return self._map_by_name[name].arm
        except KeyError:
            raise KeyError(f"embodiment {self.name!r} has no arm {name!r}; arms: "
                           f"{list(self.arm_names)}") from None  # fmt: skip

    @property
    def has_kinematics(self) -> bool:
        return self._fk is not None

    @property
    def camera_topics(self) -> dict[str, str]:
        """Camera name -> the topic its driver publishes (``cameras`` in YAML order)."""
        return {name: camera.topic for name, camera in self.cameras.items()}

    def camera(self, name: str) -> CameraConfig:
        try:
            return self.cameras[name]
        except KeyError:
            raise KeyError(f"embodiment {self.name!r} has no camera {name!r}; cameras: "
                           f"{list(self.cameras)}") from None  # fmt: skip

    @property
    def action_slot_names(self) -> tuple[str, ...]:
        return tuple(layout.slot_name(i) for i in self.action_slots)

    @property
    def state_slots(self) -> np.ndarray:
        """Indices where ``state_mask`` is True, increasing."""
        return np.flatnonzero(self.state_mask)

    # ------------------------------------------------------------------ state

    def state_from_joint_states(
        self,
        joint_states: Mapping[str, tuple[Sequence[str], Any, Any]],
        fk: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-arm joint states -> (values float32[128], mask bool[128]).

        Args:
            joint_states: arm name -> (names, positions, velocities or None), as in one
                sensor_msgs/JointState per arm. Every arm of the embodiment is required; names
                not in the config are ignored. Velocities None or empty leave the velocity slots
                out of the mask; fewer velocities than names (a driver that reports the leading
                joints only) fill those joints' slots and leave the rest out.
            fk: fill the EEF pose slots when the embodiment has a kinematic model.

        Raises:
            JointStateError: an arm or a required joint is missing, a value is NaN/inf, the
                positions' length differs from the names', or there are more velocities than
                names.
        """
        raw = np.empty(self._raw_size)
        all_velocities = True
        partial: dict[str, np.ndarray] = {}  # arm -> which velocity slots a short array filled
        for m in self._maps:
            entry = joint_states.get(m.name)
            if entry is None:
                raise JointStateError(
                    f"arm {m.name!r}: no joint state given (embodiment {self.name!r} needs arms "
                    f"{list(self.arm_names)})",
                    arm=m.name,
                )
            names, positions, velocities = entry
            index, vel_index = m.gather_index(names)
            _as_float_array(positions, len(names), m.name, "position").take(
                index, out=raw[m.pos_span]
            )
            if velocities is not None and 0 < len(velocities) < len(names):
                # Some drivers (PiPER's: 7 names, 6 velocities) report velocities for the
                # leading joints only: use those, leave the others' slots out of the mask.
                vel = _as_float_array(velocities, len(velocities), m.name, "velocity")
                known = vel_index < vel.size
                raw[m.vel_span] = np.where(known, vel[np.minimum(vel_index, vel.size - 1)], 0.0)
                partial[m.name] = known
                all_velocities = False
            elif velocities is not None and len(velocities):
                _as_float_array(velocities, len(names), m.name, "velocity").take(
                    vel_index, out=raw[m.vel_span]
                )
            else:
                raw[m.vel_span] = 0.0
                all_velocities = False
        if not math.isfinite(raw.sum()):
            self._raise_non_finite(raw)
        values = np.zeros(layout.NUM_SLOTS, dtype=np.float32)
        values[self._raw_slots] = raw * self._raw_gain + self._raw_bias
        if all_velocities:
            mask = self._vel_mask.copy()
        else:
            mask = self._pos_mask.copy()
            for m in self._maps:
                entry = joint_states[m.name][2]
                if m.name in partial:
                    mask[m.vel_slots[partial[m.name]]] = True
                elif entry is not None and len(entry):
                    mask[m.vel_slots] = True
        if fk and self._fk is not None:
            values[self._eef_slots_flat] = self._fk.forward_pos_rot6d(raw[self._fk_raw])
            mask[self._eef_slots_flat] = True
        return values, mask

    def _raise_non_finite(self, raw: np.ndarray) -> None:
        bad = int(np.flatnonzero(~np.isfinite(raw))[0])
        arm, joint, quantity = self._raw_info[bad]
        raise JointStateError(
            f"arm {arm!r}: joint {joint!r} {quantity} is {raw[bad]}; state rejected",
            arm=arm,
            joint=joint,
        )

    def eef_poses(self, joint_positions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """FK alone: arm -> joint positions in config joint order -> (4, 4) pose in base frame."""
        if self._fk is None:
            raise ValueError(f"embodiment {self.name!r} has no kinematic model")
        q = [np.asarray(joint_positions[m.name], dtype=np.float64)[m.fk_cols]
             for m in self._fk_maps]  # fmt: skip
        pos, rot = self._fk.forward(q)
        out = {}
        for i, m in enumerate(self._fk_maps):
            pose = np.eye(4)
            pose[:3, :3], pose[:3, 3] = rot[i], pos[i]
            out[m.name] = pose
        return out

    # ------------------------------------------------------------------ actions

    def _columns(self, width: int, slot_indices: Any) -> np.ndarray:
        """Column of every commanded joint (all arms, driver order) in an action row."""
        if slot_indices is None:
            if width == layout.NUM_SLOTS:
                return self._cmd_slots
            if width == len(self.action_slots):
                return self._cmd_action_cols
            raise ValueError(
                f"actions have {width} columns: give 128 (full unified vector), "
                f"{len(self.action_slots)} (this embodiment's action_slots order) or pass "
                "slot_indices"
            )
        slots = np.asarray(slot_indices, dtype=np.intp)
        key = slots.tobytes()
        lut = self._slot_lut_cache.get(key)
        if lut is None:
            if slots.ndim != 1 or len(slots) != width:
                raise ValueError(
                    f"slot_indices has shape {slots.shape}, actions have {width} columns"
                )
            lut = np.full(layout.NUM_SLOTS, -1, dtype=np.intp)
            lut[slots] = np.arange(width)
            needed = self.action_slots[lut[self.action_slots] < 0]
            if len(needed):
                raise ValueError(
                    f"slot_indices lack commanded slot(s) {[layout.slot_name(s) for s in needed]}"
                    f" of embodiment {self.name!r}"
                )
            if len(self._slot_lut_cache) > 16:
                self._slot_lut_cache.clear()
            self._slot_lut_cache[key] = lut
        return lut[self._cmd_slots]

    def commands_from_actions(
        self, actions: Any, slot_indices: Any = None
    ) -> dict[str, np.ndarray]:
        """Unified actions -> arm -> (H, n_cmd) float64 commands in driver joint order.

        ``actions`` is (H, 128), (H, k) in ``action_slots`` order, or (H, k) with
        ``slot_indices`` (k,) naming each column's slot; a 1-D row gives (n_cmd,) per arm.
        Grippers go back to raw units; everything is clipped to the joints' position limits.

        Raises:
            ValueError: wrong width, missing commanded slots, or non-finite actions.
        """
        a = np.asarray(actions)
        single = a.ndim == 1
        if single:
            a = a[None]
        if a.ndim != 2:
            raise ValueError(f"actions must be (H, k) or (k,), got shape {np.shape(actions)}")
        cmd = a[:, self._columns(a.shape[1], slot_indices)] * self._cmd_scale + self._cmd_offset
        if not math.isfinite(cmd.sum()):
            step, col = np.argwhere(~np.isfinite(cmd))[0]
            arm, joint = self._cmd_info[col]
            raise ValueError(
                f"non-finite action at step {step} for arm {arm!r} joint {joint!r}; "
                "refusing to command it"
            )
        np.clip(cmd, self._cmd_lower, self._cmd_upper, out=cmd)
        if single:
            return {m.name: cmd[0, span] for m, span in zip(self._maps, self._cmd_spans)}
        return {m.name: np.ascontiguousarray(cmd[:, span])
                for m, span in zip(self._maps, self._cmd_spans)}  # fmt: skip

    def actions_from_commands(self, commands: Mapping[str, Any]) -> np.ndarray:
        """Inverse of ``commands_from_actions``: arm -> (H, n_cmd) raw -> (H, 128) float32.

        Useful to store commanded joint positions as unified actions. A 1-D command per arm
        gives a (128,) row.
        """
        rows = None
        single = False
        out = None
        for m in self._maps:
            if m.name not in commands:
                raise ValueError(f"commands lack arm {m.name!r} of embodiment {self.name!r}")
            c = np.asarray(commands[m.name], dtype=np.float64)
            single = c.ndim == 1
            c = c.reshape(-1, c.shape[-1])
            if c.shape[1] != len(m.cmd_slots):
                raise ValueError(
                    f"commands[{m.name!r}] has {c.shape[1]} values per step; the driver order "
                    f"{list(m.arm.command_joint_names)} has {len(m.cmd_slots)}"
                )
            if out is None:
                rows = c.shape[0]
                out = np.zeros((rows, layout.NUM_SLOTS), dtype=np.float32)
            elif c.shape[0] != rows:
                raise ValueError(f"commands have different lengths per arm ({rows} vs "
                                 f"{c.shape[0]})")  # fmt: skip
            out[:, m.cmd_slots] = (c - m.cmd_offset) / m.cmd_scale
        return out[0] if single else out

    def joint_positions_from_unified(self, values: Any) -> dict[str, np.ndarray]:
        """Unified vector(s) (..., 128) -> arm -> (..., n_joints) raw positions, config order."""
        v = np.asarray(values, dtype=np.float64)
        return {m.name: v[..., m.pos_slots] * m.pos_scale + m.pos_offset for m in self._maps}

    # ------------------------------------------------------------------ description

    def slot_table(self) -> list[dict[str, Any]]:
        """One row per filled slot (for the CLI and docs), in slot order."""
        rows = []
        for m in self._maps:
            for joint in m.arm.joints:
                # Limits are in driver units; the unit column says what the slot holds.
                unit = "SI (rad or m)"
                lo, hi = joint.position_limits
                if joint.gripper_range is not None:
                    unit = f"[0,1] = raw over {list(joint.gripper_range)}"
                rows.append(dict(slot=joint.position_slot, slot_name=layout.slot_name(
                    joint.position_slot), arm=m.name, joint=joint.name, quantity="position",
                    lower=lo, upper=hi, unit=unit,
                    commanded=joint.name in m.arm.command_joint_names))  # fmt: skip
                if joint.velocity_slot is not None:
                    rows.append(dict(slot=joint.velocity_slot, slot_name=layout.slot_name(
                        joint.velocity_slot), arm=m.name, joint=joint.name, quantity="velocity",
                        lower=-joint.velocity_limit, upper=joint.velocity_limit,
                        unit="SI (rad/s or m/s)" if joint.gripper_range is None
                        else "raw/s over the gripper range width",
                        commanded=False))  # fmt: skip
        for arm_slots, m in zip(self._eef_slots, self._fk_maps):
            for slot in arm_slots:
                rows.append(dict(slot=int(slot), slot_name=layout.slot_name(slot), arm=m.name,
                                 joint="(FK)", quantity="eef", lower=None, upper=None,
                                 unit="m" if "pos" in layout.slot_name(slot) else "rot6d",
                                 commanded=False))  # fmt: skip
        return sorted(rows, key=lambda r: r["slot"])


def _as_float_array(values: Any, n: int, arm: str, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise JointStateError(
            f"arm {arm!r}: {what} array has shape {arr.shape} but there are {n} joint names",
            arm=arm,
        )
    return arr


# --------------------------------------------------------------------------- YAML loading

_TOP_KEYS = {"name", "description", "control_frequency", "kinematics", "arms", "cameras"}
_CAMERA_KEYS = {"topic", "type"}
_ARM_KEYS = {"joint_state_topic", "extra_joint_state_topics", "command_topic", "command_type",
             "command_joint_names", "command_outputs", "enable_topic", "joint_name_variants",
             "joints"}  # fmt: skip
_OUTPUT_KEYS = {"topic", "type", "joints", "name", "velocity", "effort", "stream", "max_effort",
                "controller_manager", "controller", "min_interval", "names"}  # fmt: skip
_JOINT_KEYS = {"position_slot", "velocity_slot", "position_limits", "velocity_limit",
               "gripper_range"}  # fmt: skip
_KIN_KEYS = {"type", "model", "model_package", "arms"}
_KIN_ARM_KEYS = {"joint_prefix", "joint_names", "base_body", "eef_body"}


def _check_keys(data: Any, allowed: set[str], where: str, required: set[str] = frozenset()):
    if not isinstance(data, Mapping):
        raise EmbodimentConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise EmbodimentConfigError(
            f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}"
        )
    missing = sorted(required - set(data))
    if missing:
        raise EmbodimentConfigError(f"{where}.{missing[0]}: missing (required keys: "
                                    f"{sorted(required)})")  # fmt: skip


def _slot(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise EmbodimentConfigError(f"{where}: expected a slot name or index, got {value!r}")
    if isinstance(value, int):
        if not 0 <= value < layout.NUM_SLOTS:
            raise EmbodimentConfigError(f"{where}: slot index {value} outside 0..127")
        return value
    if isinstance(value, str):
        try:
            return layout.slot_index(value)
        except KeyError as exc:
            raise EmbodimentConfigError(f"{where}: {exc.args[0]}") from None
    raise EmbodimentConfigError(f"{where}: expected a slot name or index, got {value!r}")


def _parse_joint(name: str, data: Any, where: str) -> JointConfig:
    _check_keys(data, _JOINT_KEYS, where,
                required={"position_slot", "position_limits", "velocity_limit"})  # fmt: skip
    vlim = data["velocity_limit"]
    if not isinstance(vlim, int | float) or isinstance(vlim, bool):
        raise EmbodimentConfigError(f"{where}.velocity_limit: expected a number, got {vlim!r}")
    vel_slot = data.get("velocity_slot")
    return JointConfig(
        name=str(name),
        position_slot=_slot(data["position_slot"], f"{where}.position_slot"),
        velocity_slot=None if vel_slot is None else _slot(vel_slot, f"{where}.velocity_slot"),
        position_limits=_pair(data["position_limits"], f"{where}.position_limits", "limits"),
        velocity_limit=float(vlim),
        gripper_range=(
            _pair(data["gripper_range"], f"{where}.gripper_range", "gripper_range")
            if data.get("gripper_range") is not None
            else None
        ),
        where=where,
    )


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise EmbodimentConfigError(f"{where}: expected a list of names, got {value!r}")
    return tuple(value)


def _numbers(value: Any, where: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        raise EmbodimentConfigError(f"{where}: expected a list of finite numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _parse_output(data: Any, where: str) -> CommandOutput:
    _check_keys(data, _OUTPUT_KEYS, where, required={"topic", "type", "joints"})
    for key in ("name", "controller_manager", "controller"):
        if not isinstance(data.get(key, ""), str):
            raise EmbodimentConfigError(f"{where}.{key}: expected a string")
    for key in ("max_effort", "min_interval"):
        value = data.get(key, 0.0 if key == "max_effort" else 0.1)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise EmbodimentConfigError(f"{where}.{key}: expected a number, got {value!r}")
    if not isinstance(data.get("stream", False), bool):
        raise EmbodimentConfigError(f"{where}.stream: expected true or false")
    return CommandOutput(
        topic=data["topic"],
        type=data["type"],
        joints=_names(data["joints"], f"{where}.joints"),
        name=data.get("name", ""),
        velocity=_numbers(data.get("velocity"), f"{where}.velocity"),
        effort=_numbers(data.get("effort"), f"{where}.effort"),
        stream=data.get("stream", False),
        max_effort=float(data.get("max_effort", 0.0)),
        controller_manager=data.get("controller_manager", ""),
        controller=data.get("controller", ""),
        min_interval=float(data.get("min_interval", 0.1)),
        names=_names(data["names"], f"{where}.names") if "names" in data else None,
        where=where,
    )


def _parse_arm(name: str, data: Any, where: str) -> ArmConfig:
    _check_keys(data, _ARM_KEYS, where, required={"joint_state_topic", "joints"})
    joints_data = data["joints"]
    _check_keys(joints_data, set(joints_data or {}), f"{where}.joints")
    joints = tuple(
        _parse_joint(jn, jd, f"{where}.joints.{jn}") for jn, jd in joints_data.items()
    )
    short = [k for k in ("command_topic", "command_type") if k in data]
    if "command_outputs" in data:
        if short:
            raise EmbodimentConfigError(
                f"{where}.{short[0]}: give either command_outputs or command_topic + "
                "command_type, not both"
            )
        outputs_data = data["command_outputs"]
        if not isinstance(outputs_data, list) or not outputs_data:
            raise EmbodimentConfigError(
                f"{where}.command_outputs: expected a list of outputs "
                "({topic, type, joints, ...}), got {outputs_data!r}"
            )
        outputs = tuple(
            _parse_output(o, f"{where}.command_outputs[{i}]") for i, o in enumerate(outputs_data)
        )
        cmd_names = (
            _names(data["command_joint_names"], f"{where}.command_joint_names")
            if "command_joint_names" in data
            else tuple(dict.fromkeys(j for o in outputs for j in o.joints))  # each joint once
        )
    else:
        for key in ("command_topic", "command_type", "command_joint_names"):
            if key not in data:
                raise EmbodimentConfigError(
                    f"{where}.{key}: missing (or give command_outputs instead)"
                )
        cmd_names = _names(data["command_joint_names"], f"{where}.command_joint_names")
        if data["command_type"] not in COMMAND_TYPES:
            raise EmbodimentConfigError(
                f"{where}.command_type: {data['command_type']!r} not supported; use one of "
                f"{list(COMMAND_TYPES)} (vendor types go in command_outputs)"
            )
        outputs = (
            CommandOutput(
                topic=data["command_topic"],
                type=data["command_type"],
                joints=cmd_names,
                where=f"{where}.command_topic",
            ),
        )
    extra = data.get("extra_joint_state_topics", [])
    enable_topic = data.get("enable_topic", "")
    if not isinstance(enable_topic, str):
        raise EmbodimentConfigError(f"{where}.enable_topic: expected a topic name")
    return ArmConfig(
        name=str(name),
        joint_state_topic=data["joint_state_topic"],
        command_joint_names=cmd_names,
        joints=joints,
        command_outputs=outputs,
        extra_joint_state_topics=_names(extra, f"{where}.extra_joint_state_topics"),
        enable_topic=enable_topic,
        joint_name_variants=tuple(
            _names(v, f"{where}.joint_name_variants[{i}]")
            for i, v in enumerate(data.get("joint_name_variants", []))
        ),
        where=where,
    )


def _parse_cameras(data: Any, where: str) -> dict[str, CameraConfig]:
    if data is None:
        return {}
    _check_keys(data, set(data) if isinstance(data, Mapping) else set(), where)
    cameras = {}
    for name, spec in data.items():
        w = f"{where}.{name}"
        _check_keys(spec, _CAMERA_KEYS, w, required=_CAMERA_KEYS)
        cameras[str(name)] = CameraConfig(name=str(name), topic=spec["topic"], type=spec["type"],
                                          where=w)  # fmt: skip
    return cameras


def _parse_kinematics(data: Any, arms: tuple[ArmConfig, ...], where: str, base_dir: Path | None):
    _check_keys(data, _KIN_KEYS, where, required={"type", "model", "arms"})
    if data["type"] != "mujoco":
        raise EmbodimentConfigError(
            f"{where}.type: {data['type']!r} not supported; use 'mujoco' (or drop the "
            "kinematics section: the EEF slots are then masked out)"
        )
    try:
        model_path = resolve_model_path(data["model"], data.get("model_package"), base_dir)
    except KinematicsError as exc:
        raise EmbodimentConfigError(f"{where}: {exc}") from None
    by_name = {a.name: a for a in arms}
    _check_keys(data["arms"], set(by_name), f"{where}.arms")
    chains, fk_joints = {}, {}
    for arm_name, spec in data["arms"].items():
        w = f"{where}.arms.{arm_name}"
        _check_keys(spec, _KIN_ARM_KEYS, w, required={"base_body", "eef_body"})
        arm = by_name[arm_name]
        # FK takes the arm joints (joint_pos slots), not the gripper.
        names = tuple(
            j.name for j in arm.joints if layout.slot_kind(j.position_slot) == layout.JOINT_POS
        )
        model_names = spec.get("joint_names")
        if model_names is None:
            model_names = [spec.get("joint_prefix", "") + n for n in names]
        elif len(model_names) != len(names):
            raise EmbodimentConfigError(
                f"{w}.joint_names: {len(model_names)} names for the arm's {len(names)} joints "
                f"{list(names)}"
            )
        chains[arm_name] = MujocoArmChain(tuple(model_names), spec["base_body"], spec["eef_body"])
        fk_joints[arm_name] = names
    return KinematicsConfig(model_path=model_path, chains=chains, fk_joints=fk_joints)


def embodiment_from_dict(
    data: Any, source: str = "<dict>", kinematics: bool = True, base_dir: Path | None = None
) -> Embodiment:
    """Build an Embodiment from parsed YAML; errors are prefixed with ``source``."""
    _check_keys(data, _TOP_KEYS, source, required={"control_frequency", "arms"})
    arms_data = data["arms"]
    _check_keys(arms_data, set(ARM_NAMES), f"{source}: arms")
    arms = tuple(_parse_arm(n, d, f"{source}: arms.{n}") for n, d in arms_data.items())
    kin = None
    if kinematics and data.get("kinematics") is not None:
        kin = _parse_kinematics(data["kinematics"], arms, f"{source}: kinematics", base_dir)
    cameras = _parse_cameras(data.get("cameras"), f"{source}: cameras")
    name = data.get("name") or (Path(source).stem if source != "<dict>" else "")
    return Embodiment(
        name=name,
        control_frequency=data["control_frequency"],
        arms=arms,
        description=str(data.get("description", "")).strip(),
        source=source,
        kinematics=kin,
        cameras=cameras,
    )


def embodiment_dirs() -> list[Path]:
    """Directories searched for shipped embodiments: the installed share dir, then the source."""
    dirs = []
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory(PACKAGE)) / "config" / "embodiments")
    except Exception:  # ament index absent (plain pytest) or package not installed
        pass
    dirs.append(Path(__file__).resolve().parents[1] / "config" / "embodiments")
    seen, out = set(), []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def _shipped() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in embodiment_dirs():
        for path in sorted(d.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def list_embodiments() -> list[str]:
    """Names of the shipped embodiments, sorted."""
    return sorted(_shipped())


def resolve_embodiment_path(name_or_path: str | os.PathLike) -> Path:
    """A shipped name or a YAML path -> the file; unknown names list the known ones."""
    text = os.fspath(name_or_path)
    if os.sep in text or text.endswith((".yaml", ".yml")) or Path(text).is_file():
        path = Path(text).expanduser()
        if not path.is_file():
            raise EmbodimentConfigError(f"embodiment file {text!r} does not exist")
        return path
    shipped = _shipped()
    if text not in shipped:
        raise EmbodimentConfigError(
            f"unknown embodiment {text!r}; known: {sorted(shipped)} (or pass a path to a YAML)"
        )
    return shipped[text]


def load_embodiment(name_or_path: str | os.PathLike, kinematics: bool = True) -> Embodiment:
    """Load and validate a shipped embodiment by name, or a user's YAML by path.

    ``kinematics=False`` skips the FK model (the EEF slots are then masked out): what the
    executor uses, since commands never need FK.
    """
    path = resolve_embodiment_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise EmbodimentConfigError(f"{path}: not valid YAML: {exc}") from None
    return embodiment_from_dict(data, source=str(path), kinematics=kinematics,
                                base_dir=path.parent)  # fmt: skip
