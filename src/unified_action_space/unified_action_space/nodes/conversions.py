"""Message <-> array conversions of the unified state node, each small and round-trip tested.

Message classes only; no rclpy graph objects, so the tests run without a ROS context.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import JointState

from action_diffusion_msgs.msg import UnifiedState
from unified_action_space.layout import NUM_SLOTS

_NS = 1_000_000_000


def stamp_to_ns(stamp: Time) -> int:
    return int(stamp.sec) * _NS + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    sec, nanosec = divmod(int(ns), _NS)
    return Time(sec=sec, nanosec=nanosec)


def joint_state_to_arrays(
    msg: JointState,
) -> tuple[list[str], np.ndarray, np.ndarray | None, int]:
    """JointState -> (names, positions float64, velocities float64 or None, stamp ns).

    An empty velocity field (allowed by the message) becomes None.
    """
    velocities = np.asarray(msg.velocity, dtype=np.float64) if len(msg.velocity) else None
    return (
        list(msg.name),
        np.asarray(msg.position, dtype=np.float64),
        velocities,
        stamp_to_ns(msg.header.stamp),
    )


def arrays_to_joint_state(
    names: Sequence[str],
    positions: Sequence[float],
    velocities: Sequence[float] | None = None,
    stamp_ns: int = 0,
) -> JointState:
    """Inverse of ``joint_state_to_arrays`` (used by tests and simple publishers)."""
    msg = JointState()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.name = list(names)
    msg.position = np.asarray(positions, dtype=np.float64).tolist()
    if velocities is not None:
        msg.velocity = np.asarray(velocities, dtype=np.float64).tolist()
    return msg


def unified_state_to_msg(
    values: np.ndarray,
    mask: np.ndarray,
    embodiment: str,
    control_frequency: float,
    stamp_ns: int,
) -> UnifiedState:
    """(values[128], mask[128]) -> action_diffusion_msgs/UnifiedState."""
    values = np.asarray(values, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if values.shape != (NUM_SLOTS,) or mask.shape != (NUM_SLOTS,):
        raise ValueError(f"expected (128,) values and mask, got {values.shape} and {mask.shape}")
    msg = UnifiedState()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.embodiment = embodiment
    msg.control_frequency = float(control_frequency)
    msg.values = values  # the generated setter takes a float32 ndarray of the fixed size
    msg.mask = mask.tolist()
    return msg


def unified_state_from_msg(msg: UnifiedState) -> tuple[np.ndarray, np.ndarray, str, float, int]:
    """UnifiedState -> (values float32[128], mask bool[128], embodiment, control_frequency,
    stamp ns)."""
    return (
        np.asarray(msg.values, dtype=np.float32).copy(),
        np.asarray(msg.mask, dtype=bool),
        msg.embodiment,
        float(msg.control_frequency),
        stamp_to_ns(msg.header.stamp),
    )
