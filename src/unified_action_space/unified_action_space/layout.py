"""RDT's 128-slot physically interpretable unified space, as data.

One source of truth for slot names, indices, kinds and groups (Liu et al., 2024, "RDT-1B").
The same layout serves as state (proprioception) and as action. Units: rad, m, m/s, rad/s;
only the gripper opening slots (``*_gripper_open``) are min-max normalized to [0, 1].
"""

from __future__ import annotations

import numpy as np

NUM_SLOTS = 128
ARM_BLOCK = 50  # slots per arm: right arm 0-49, left arm 50-99
ARM_OFFSETS = {"right": 0, "left": 50}
MAX_ARM_JOINTS = 10
MAX_GRIPPER_JOINTS = 5

# Slot kinds; embodiment validation checks that a joint lands in a slot of the right kind.
JOINT_POS = "joint_pos"
GRIPPER_POS = "gripper_pos"
JOINT_VEL = "joint_vel"
GRIPPER_VEL = "gripper_vel"
EEF_POS = "eef_pos"
EEF_ROT6D = "eef_rot6d"
EEF_LIN_VEL = "eef_lin_vel"
EEF_ANG_VEL = "eef_ang_vel"
BASE_VEL = "base_vel"
RESERVED = "reserved"
SLOT_KIND_NAMES = (
    JOINT_POS, GRIPPER_POS, JOINT_VEL, GRIPPER_VEL, EEF_POS, EEF_ROT6D, EEF_LIN_VEL, EEF_ANG_VEL,
    BASE_VEL, RESERVED,
)  # fmt: skip
POSITION_KINDS = frozenset({JOINT_POS, GRIPPER_POS})
VELOCITY_KINDS = frozenset({JOINT_VEL, GRIPPER_VEL})
# A joint's velocity slot sits this many slots after its position slot (0-14 -> 15-29).
VELOCITY_OFFSET = 15


def _arm_block(side: str) -> list[tuple[str, str]]:
    """(name, kind) for the 50 slots of one arm, in index order."""
    p = f"{side}_"
    block: list[tuple[str, str]] = []
    block += [(f"{p}arm_joint_{i}_pos", JOINT_POS) for i in range(MAX_ARM_JOINTS)]
    block += [(f"{p}gripper_open", GRIPPER_POS)]
    block += [(f"{p}gripper_joint_{i}_pos", GRIPPER_POS) for i in range(1, MAX_GRIPPER_JOINTS)]
    block += [(f"{p}arm_joint_{i}_vel", JOINT_VEL) for i in range(MAX_ARM_JOINTS)]
    block += [(f"{p}gripper_open_vel", GRIPPER_VEL)]
    block += [(f"{p}gripper_joint_{i}_vel", GRIPPER_VEL) for i in range(1, MAX_GRIPPER_JOINTS)]
    block += [(f"{p}eef_pos_{a}", EEF_POS) for a in "xyz"]
    block += [(f"{p}eef_rot6d_{i}", EEF_ROT6D) for i in range(6)]
    block += [(f"{p}eef_lin_vel_{a}", EEF_LIN_VEL) for a in "xyz"]
    block += [(f"{p}eef_ang_vel_{a}", EEF_ANG_VEL) for a in ("roll", "pitch", "yaw")]
    offset = ARM_OFFSETS[side]
    block += [(f"reserved_{offset + i}", RESERVED) for i in range(len(block), ARM_BLOCK)]
    return block


def _build() -> list[tuple[str, str]]:
    slots = _arm_block("right") + _arm_block("left")
    slots += [("base_lin_vel_x", BASE_VEL), ("base_lin_vel_y", BASE_VEL)]
    slots += [("base_angular_vel", BASE_VEL)]
    slots += [(f"reserved_{i}", RESERVED) for i in range(len(slots), NUM_SLOTS)]
    return slots


_SLOTS = _build()
SLOT_NAMES: tuple[str, ...] = tuple(name for name, _ in _SLOTS)
SLOT_KINDS: tuple[str, ...] = tuple(kind for _, kind in _SLOTS)
_INDEX = {name: i for i, name in enumerate(SLOT_NAMES)}
assert len(SLOT_NAMES) == NUM_SLOTS and len(_INDEX) == NUM_SLOTS

# Where RDT-1B's own slot names (its configs/state_vec.py) spell a slot differently from ours.
_RDT_SPELLINGS = (
    ("eef_rot6d_", "eef_angle_"),
    ("eef_lin_vel_", "eef_vel_"),
    ("eef_ang_vel_", "eef_angular_vel_"),
    ("base_lin_vel_", "base_vel_"),
)


def _rdt_aliases() -> dict[str, int]:
    """RDT-1B's slot names that are not ours -> slot index.

    RDT spells the 6D rotation ``eef_angle_<i>``, the EEF velocities ``eef_vel_<axis>`` and
    ``eef_angular_vel_<axis>`` and the base's linear velocity ``base_vel_<axis>``; it also names
    the gripper opening slot gripper joint 0 (``<side>_gripper_joint_0_pos`` / ``_vel``), and
    accepts every right-arm name without the ``right_`` prefix (one-arm robots).
    """
    names: dict[str, int] = {}
    for index, name in enumerate(SLOT_NAMES):
        if SLOT_KINDS[index] == RESERVED:
            continue
        for ours, rdt in _RDT_SPELLINGS:
            name = name.replace(ours, rdt)
        names[name] = index
    for side, offset in ARM_OFFSETS.items():
        names[f"{side}_gripper_joint_0_pos"] = offset + 10
        names[f"{side}_gripper_joint_0_vel"] = offset + 10 + VELOCITY_OFFSET
    names.update({n.removeprefix("right_"): i for n, i in names.items() if n.startswith("right_")})
    assert all(_INDEX.get(n, i) == i for n, i in names.items())  # never ours at another index
    return {n: i for n, i in names.items() if n not in _INDEX}


RDT_ALIASES: dict[str, int] = _rdt_aliases()


def slot_index(name: str) -> int:
    """Index of a slot name (e.g. ``"left_gripper_open"`` -> 60).

    RDT-1B's names are accepted as aliases (``RDT_ALIASES``: e.g. ``"right_eef_angle_0"`` -> 33,
    ``"base_vel_x"`` -> 100, ``"right_gripper_joint_0_pos"`` -> 10), so RDT configs read unchanged.
    """
    index = _INDEX.get(name)
    if index is None:
        index = RDT_ALIASES.get(name)
    if index is None:
        raise KeyError(
            f"unknown unified slot name {name!r}; names look like 'right_arm_joint_0_pos', "
            "'left_gripper_open', 'right_eef_rot6d_0' (see unified_action_space.layout.SLOT_NAMES;"
            " RDT-1B's names such as 'right_eef_angle_0' are accepted too: RDT_ALIASES)"
        ) from None
    return index


def slot_name(index: int) -> str:
    """Name of slot ``index`` (0..127)."""
    if not 0 <= int(index) < NUM_SLOTS:
        raise IndexError(f"unified slot index {index} out of range 0..{NUM_SLOTS - 1}")
    return SLOT_NAMES[int(index)]


def slot_kind(index_or_name: int | str) -> str:
    """Kind of a slot, one of ``SLOT_KIND_NAMES``."""
    index = slot_index(index_or_name) if isinstance(index_or_name, str) else int(index_or_name)
    slot_name(index)  # range check
    return SLOT_KINDS[index]


def slot_side(index: int) -> str | None:
    """``"right"`` for 0-49, ``"left"`` for 50-99, None for base and the tail."""
    index = int(index)
    if 0 <= index < ARM_BLOCK:
        return "right"
    if ARM_BLOCK <= index < 2 * ARM_BLOCK:
        return "left"
    return None


def _group_ranges() -> dict[str, tuple[int, ...]]:
    groups: dict[str, tuple[int, ...]] = {}
    for side, off in ARM_OFFSETS.items():
        p = f"{side}_"
        groups[f"{p}arm_joint_pos"] = tuple(range(off + 0, off + 10))
        groups[f"{p}gripper_pos"] = tuple(range(off + 10, off + 15))
        groups[f"{p}arm_joint_vel"] = tuple(range(off + 15, off + 25))
        groups[f"{p}gripper_vel"] = tuple(range(off + 25, off + 30))
        groups[f"{p}eef_pos"] = tuple(range(off + 30, off + 33))
        groups[f"{p}eef_rot6d"] = tuple(range(off + 33, off + 39))
        groups[f"{p}eef_lin_vel"] = tuple(range(off + 39, off + 42))
        groups[f"{p}eef_ang_vel"] = tuple(range(off + 42, off + 45))
        groups[f"{p}reserved"] = tuple(range(off + 45, off + 50))
        groups[f"{p}arm"] = tuple(range(off, off + ARM_BLOCK))
        # Spellings used in docs/ARCHITECTURE.md.
        groups[f"{p}gripper_joint_pos"] = groups[f"{p}gripper_pos"]
        groups[f"{p}gripper_joint_vel"] = groups[f"{p}gripper_vel"]
        groups[f"{p}eef_rot_6d"] = groups[f"{p}eef_rot6d"]
    groups["base_vel"] = (100, 101, 102)
    groups["reserved"] = tuple(i for i, k in enumerate(SLOT_KINDS) if k == RESERVED)
    return groups


GROUPS: dict[str, tuple[int, ...]] = _group_ranges()


def rotation_matrix_to_6d(rotation: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` rotation matrices -> ``(..., 6)``: first two columns, column by column.

    Order is ``[R00, R10, R20, R01, R11, R21]`` as in RDT.
    """
    rotation = np.asarray(rotation)
    if rotation.shape[-2:] != (3, 3):
        raise ValueError(f"rotation_matrix_to_6d expects (..., 3, 3), got {rotation.shape}")
    # Swap to (..., column, row) so a reshape reads column by column.
    cols = np.swapaxes(rotation[..., :, :2], -1, -2)
    return cols.reshape(*rotation.shape[:-2], 6)


def rotation_6d_to_matrix(d6: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """``(..., 6)`` -> ``(..., 3, 3)`` rotation matrices by Gram-Schmidt (Zhou et al., 2019).

    Inputs need not be orthonormal (network outputs): column 0 is normalized, column 1 is
    orthogonalized against it, column 2 is their cross product.
    """
    d6 = np.asarray(d6, dtype=np.float64)
    if d6.shape[-1] != 6:
        raise ValueError(f"rotation_6d_to_matrix expects (..., 6), got {d6.shape}")
    a1, a2 = d6[..., 0:3], d6[..., 3:6]
    b1 = a1 / np.maximum(np.linalg.norm(a1, axis=-1, keepdims=True), eps)
    a2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    b2 = a2 / np.maximum(np.linalg.norm(a2, axis=-1, keepdims=True), eps)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-1)
