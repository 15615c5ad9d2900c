"""The one home of the stamp, JointState and UnifiedState <-> array conversions.

Every package converts these messages here: ``unified_state_node``, the runtime nodes of
``action_diffusion_policy`` and the ``aloha_sim`` nodes. Message classes only, no rclpy, so it
imports and is tested with plain pytest.

Stamps are integer nanoseconds (exact at any epoch); ``stamp_to_seconds`` / ``set_stamp`` and the
``stamp`` property of the returned tuples give float seconds where the runtime wants them.

Jazzy's generated messages accept wrongly sized arrays unless ``ROS_PYTHON_CHECK_FIELDS=1``
(docs/ARCHITECTURE.md), so the builders check shapes before a message is made and the readers
check them again on receive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import JointState

from action_diffusion_msgs.msg import UnifiedState
from unified_action_space.layout import NUM_SLOTS

_NS = 1_000_000_000


# --- time ------------------------------------------------------------------------------------
def stamp_to_ns(stamp: Time) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * _NS + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    """Integer nanoseconds -> builtin_interfaces/Time (0 <= nanosec < 1e9)."""
    sec, nanosec = divmod(int(ns), _NS)
    return Time(sec=sec, nanosec=nanosec)


def stamp_to_seconds(stamp: Time) -> float:
    """builtin_interfaces/Time -> float seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def _ns_to_seconds(ns: int) -> float:
    sec, nanosec = divmod(int(ns), _NS)
    return sec + nanosec * 1e-9  # the same float as stamp_to_seconds(ns_to_stamp(ns))


def seconds_to_ns(seconds: float) -> int:
    """Float seconds -> integer nanoseconds, rounding the fraction to the nearest nanosecond."""
    sec = math.floor(seconds)
    return int(sec) * _NS + round((seconds - sec) * 1e9)


def set_stamp(stamp: Time, seconds: float) -> None:
    """Write float seconds into a builtin_interfaces/Time in place."""
    stamp.sec, stamp.nanosec = divmod(seconds_to_ns(seconds), _NS)


# --- sensor_msgs/JointState ------------------------------------------------------------------
class JointStateArrays(NamedTuple):
    names: list[str]
    positions: np.ndarray  # (n,) float64
    velocities: np.ndarray | None  # (m,) float64, m <= n; None when the message has none
    stamp_ns: int

    @property
    def stamp(self) -> float:
        """The stamp in float seconds, bit for bit ``stamp_to_seconds`` of the message's."""
        return _ns_to_seconds(self.stamp_ns)


def _check_joint_sizes(n_names: int, n_positions: int, n_velocities: int, what: str) -> None:
    if n_positions != n_names or n_velocities > n_names:
        raise ValueError(
            f"{what} has {n_names} names, {n_positions} positions and {n_velocities} "
            "velocities; need as many positions as names and at most as many velocities"
        )


def joint_state_to_msg(
    names: Sequence[str],
    positions: Sequence[float],
    velocities: Sequence[float] | None = None,
    stamp_ns: int = 0,
) -> JointState:
    """(names, positions, velocities or None, stamp ns) -> sensor_msgs/JointState."""
    positions = np.asarray(positions, dtype=np.float64).reshape(-1)
    vel = None if velocities is None else np.asarray(velocities, dtype=np.float64).reshape(-1)
    _check_joint_sizes(len(names), positions.size, 0 if vel is None else vel.size, "JointState")
    msg = JointState()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.name = list(names)
    msg.position = positions.tolist()
    if vel is not None:
        msg.velocity = vel.tolist()
    return msg


def joint_state_from_msg(msg: JointState) -> JointStateArrays:
    """sensor_msgs/JointState -> (names, positions, velocities or None, stamp ns).

    An empty velocity field (allowed by the message) becomes None. Fewer velocities than names
    are kept (some drivers report the leading joints only); ValueError when the positions'
    length differs from the names' or there are more velocities than names.
    """
    _check_joint_sizes(len(msg.name), len(msg.position), len(msg.velocity), "JointState")
    velocities = np.asarray(msg.velocity, dtype=np.float64) if len(msg.velocity) else None
    return JointStateArrays(
        list(msg.name),
        np.asarray(msg.position, dtype=np.float64),
        velocities,
        stamp_to_ns(msg.header.stamp),
    )


def joint_positions_from_msg(msg: JointState, names: Sequence[str]) -> np.ndarray | None:
    """Positions in ``names`` order (float64); None when a name is missing or the message has
    fewer positions than names."""
    index = {name: i for i, name in enumerate(msg.name)}
    if any(name not in index for name in names) or len(msg.position) < len(msg.name):
        return None
    return np.array([msg.position[index[name]] for name in names], dtype=np.float64)


# --- action_diffusion_msgs/UnifiedState ------------------------------------------------------
class UnifiedStateArrays(NamedTuple):
    values: np.ndarray  # (128,) float32
    mask: np.ndarray  # (128,) bool
    embodiment: str
    control_frequency: float
    stamp_ns: int

    @property
    def stamp(self) -> float:
        """The stamp in float seconds, bit for bit ``stamp_to_seconds`` of the message's."""
        return _ns_to_seconds(self.stamp_ns)


def _check_state_sizes(values: np.ndarray, mask: np.ndarray, what: str) -> None:
    if values.shape != (NUM_SLOTS,) or mask.shape != (NUM_SLOTS,):
        raise ValueError(
            f"{what}: expected ({NUM_SLOTS},) values and mask, got {values.shape} and {mask.shape}"
        )


def unified_state_to_msg(
    values: np.ndarray,
    mask: np.ndarray,
    embodiment: str = "",
    control_frequency: float = 0.0,
    stamp_ns: int = 0,
) -> UnifiedState:
    """(values[128], mask[128], embodiment, control_frequency, stamp ns) -> UnifiedState."""
    values = np.asarray(values, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    _check_state_sizes(values, mask, "UnifiedState to send")
    msg = UnifiedState()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.embodiment = embodiment
    msg.control_frequency = float(control_frequency)
    msg.values = values  # the generated setter takes a float32 ndarray of the fixed size
    msg.mask = mask.tolist()
    return msg


def unified_state_from_msg(msg: UnifiedState) -> UnifiedStateArrays:
    """UnifiedState -> (values float32[128], mask bool[128], embodiment, control_frequency,
    stamp ns); ValueError when values or mask do not have 128 entries."""
    values = np.asarray(msg.values, dtype=np.float32).reshape(-1).copy()
    mask = np.asarray(msg.mask, dtype=bool).reshape(-1)
    _check_state_sizes(values, mask, f"UnifiedState from {msg.embodiment!r}")
    return UnifiedStateArrays(
        values,
        mask,
        msg.embodiment,
        float(msg.control_frequency),
        stamp_to_ns(msg.header.stamp),
    )
