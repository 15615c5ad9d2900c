"""The 128-slot layout against the issue's table, slot by slot, and the 6D rotation helpers."""

import numpy as np
import pytest

from unified_action_space import layout
from unified_action_space.layout import (
    GROUPS,
    NUM_SLOTS,
    SLOT_KINDS,
    SLOT_NAMES,
    rotation_6d_to_matrix,
    rotation_matrix_to_6d,
    slot_index,
    slot_name,
)


def _expected_table() -> dict[int, tuple[str, str]]:
    """The RDT table of the issue written out independently: index -> (name, kind)."""
    table = {}
    for side, off in (("right", 0), ("left", 50)):
        for i in range(10):
            table[off + i] = (f"{side}_arm_joint_{i}_pos", "joint_pos")
            table[off + 15 + i] = (f"{side}_arm_joint_{i}_vel", "joint_vel")
        table[off + 10] = (f"{side}_gripper_open", "gripper_pos")
        table[off + 25] = (f"{side}_gripper_open_vel", "gripper_vel")
        for i in range(1, 5):
            table[off + 10 + i] = (f"{side}_gripper_joint_{i}_pos", "gripper_pos")
            table[off + 25 + i] = (f"{side}_gripper_joint_{i}_vel", "gripper_vel")
        for i, axis in enumerate("xyz"):
            table[off + 30 + i] = (f"{side}_eef_pos_{axis}", "eef_pos")
            table[off + 39 + i] = (f"{side}_eef_lin_vel_{axis}", "eef_lin_vel")
        for i in range(6):
            table[off + 33 + i] = (f"{side}_eef_rot6d_{i}", "eef_rot6d")
        for i, axis in enumerate(("roll", "pitch", "yaw")):
            table[off + 42 + i] = (f"{side}_eef_ang_vel_{axis}", "eef_ang_vel")
        for i in range(45, 50):
            table[off + i] = (f"reserved_{off + i}", "reserved")
    table[100] = ("base_lin_vel_x", "base_vel")
    table[101] = ("base_lin_vel_y", "base_vel")
    table[102] = ("base_angular_vel", "base_vel")
    for i in range(103, 128):
        table[i] = (f"reserved_{i}", "reserved")
    return table


@pytest.mark.parametrize("index", range(NUM_SLOTS))
def test_every_slot_matches_the_table(index):
    name, kind = _expected_table()[index]
    assert SLOT_NAMES[index] == name
    assert SLOT_KINDS[index] == kind
    assert slot_index(name) == index
    assert slot_name(index) == name
    assert layout.slot_kind(name) == kind


def test_table_landmarks_from_the_issue():
    assert slot_index("right_gripper_open") == 10
    assert slot_index("right_gripper_open_vel") == 25
    assert slot_index("left_gripper_open") == 60
    assert slot_index("left_eef_pos_x") == 80
    assert GROUPS["left_eef_rot6d"] == tuple(range(83, 89))
    assert GROUPS["left_eef_rot_6d"] == tuple(range(83, 89))  # ARCHITECTURE.md spelling
    assert GROUPS["right_arm_joint_pos"] == tuple(range(10))
    assert GROUPS["right_gripper_joint_pos"] == tuple(range(10, 15))
    assert GROUPS["left_arm_joint_pos"] == tuple(range(50, 60))
    assert GROUPS["base_vel"] == (100, 101, 102)
    assert len(set(SLOT_NAMES)) == NUM_SLOTS


def test_groups_are_consistent_with_kinds():
    for name, indices in GROUPS.items():
        assert all(0 <= i < NUM_SLOTS for i in indices), name
    for side in ("right", "left"):
        assert {SLOT_KINDS[i] for i in GROUPS[f"{side}_eef_pos"]} == {"eef_pos"}
        assert {SLOT_KINDS[i] for i in GROUPS[f"{side}_gripper_vel"]} == {"gripper_vel"}
        assert len(GROUPS[f"{side}_arm"]) == 50
    reserved = set(GROUPS["reserved"])
    assert reserved == {i for i, k in enumerate(SLOT_KINDS) if k == "reserved"}
    assert len(reserved) == 10 + 25


def test_unknown_names_and_indices_raise():
    with pytest.raises(KeyError, match="right_arm_joint_0_pos"):
        slot_index("right_arm_joint_10_pos")
    with pytest.raises(IndexError):
        slot_name(128)
    with pytest.raises(IndexError):
        slot_name(-1)


def _random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def test_6d_is_first_two_columns_column_by_column():
    r = np.arange(9.0).reshape(3, 3)
    # [R00, R10, R20, R01, R11, R21]
    np.testing.assert_array_equal(rotation_matrix_to_6d(r), [0, 3, 6, 1, 4, 7])


def test_6d_round_trip_random_rotations():
    rng = np.random.default_rng(0)
    rot = _random_rotations(1000, rng)
    assert np.allclose(np.linalg.det(rot), 1.0)
    d6 = rotation_matrix_to_6d(rot)
    assert d6.shape == (1000, 6)
    np.testing.assert_allclose(rotation_6d_to_matrix(d6), rot, atol=1e-12)
    # Batched over extra leading dimensions too.
    rot = rot.reshape(10, 100, 3, 3)
    np.testing.assert_allclose(rotation_6d_to_matrix(rotation_matrix_to_6d(rot)), rot, atol=1e-12)


def test_6d_to_matrix_orthonormalizes_noisy_input():
    rng = np.random.default_rng(1)
    d6 = rotation_matrix_to_6d(_random_rotations(200, rng)) * 3.0 + rng.normal(
        scale=0.1, size=(200, 6)
    )
    rot = rotation_6d_to_matrix(d6)
    eye = np.broadcast_to(np.eye(3), rot.shape)
    np.testing.assert_allclose(rot.transpose(0, 2, 1) @ rot, eye, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
    # Gram-Schmidt keeps the first column's direction.
    first = d6[:, :3] / np.linalg.norm(d6[:, :3], axis=1, keepdims=True)
    np.testing.assert_allclose(rot[:, :, 0], first, atol=1e-12)


def test_rotation_helpers_reject_wrong_shapes():
    with pytest.raises(ValueError):
        rotation_matrix_to_6d(np.zeros((3, 4)))
    with pytest.raises(ValueError):
        rotation_6d_to_matrix(np.zeros(5))


def _rdt_state_vec_table() -> dict[str, int]:
    """RDT-1B's name -> index table (configs/state_vec.py of thu-ml/RoboticsDiffusionTransformer,
    Liu et al. 2024), written out here from its facts, range by range."""
    table: dict[str, int] = {}
    # (prefixes, offset): the right arm also goes without a prefix; the left arm does not.
    for prefixes, off in ((("", "right_"), 0), (("left_",), 50)):
        for p in prefixes:
            table.update({f"{p}arm_joint_{i}_pos": off + i for i in range(10)})  # [0, 10)
            table.update({f"{p}gripper_joint_{i}_pos": off + 10 + i for i in range(5)})  # [10, 15)
            table[f"{p}gripper_open"] = off + 10
            table.update({f"{p}arm_joint_{i}_vel": off + 15 + i for i in range(10)})  # [15, 25)
            table.update({f"{p}gripper_joint_{i}_vel": off + 25 + i for i in range(5)})  # [25, 30)
            table[f"{p}gripper_open_vel"] = off + 25
            table.update({f"{p}eef_pos_{a}": off + 30 + i for i, a in enumerate("xyz")})
            table.update({f"{p}eef_angle_{i}": off + 33 + i for i in range(6)})  # [33, 39)
            table.update({f"{p}eef_vel_{a}": off + 39 + i for i, a in enumerate("xyz")})
            rpy = ("roll", "pitch", "yaw")
            table.update({f"{p}eef_angular_vel_{a}": off + 42 + i for i, a in enumerate(rpy)})
            # [42, 45) above; [45, 50) reserved
    table.update(base_vel_x=100, base_vel_y=101, base_angular_vel=102)  # [103, 128) reserved
    return table


RDT_TABLE = _rdt_state_vec_table()


def test_rdt_table_is_complete():
    assert len(RDT_TABLE) == 144  # 94 right-arm (with and without prefix), 47 left, 3 base
    # every non-reserved slot has an RDT name, and no reserved one does
    assert set(RDT_TABLE.values()) == {i for i, k in enumerate(SLOT_KINDS) if k != "reserved"}


@pytest.mark.parametrize("name", sorted(RDT_TABLE))
def test_every_rdt_name_maps_to_rdt_index(name):
    assert slot_index(name) == RDT_TABLE[name]
    assert layout.slot_kind(name) == SLOT_KINDS[RDT_TABLE[name]]


def test_rdt_aliases_are_exactly_rdt_names_that_are_not_ours():
    assert set(layout.RDT_ALIASES) == set(RDT_TABLE) - set(SLOT_NAMES)
    assert all(layout.RDT_ALIASES[n] == RDT_TABLE[n] for n in layout.RDT_ALIASES)
    # the issue's examples
    for name, index in [("right_eef_angle_0", 33), ("right_eef_vel_x", 39),
                        ("right_eef_angular_vel_roll", 42), ("base_vel_x", 100),
                        ("right_gripper_joint_0_pos", 10), ("left_eef_angle_5", 88)]:  # fmt: skip
        assert slot_index(name) == index
    assert slot_name(slot_index("base_vel_y")) == "base_lin_vel_y"  # names stay ours


def test_embodiment_slots_accept_rdt_names():
    from unified_action_space.embodiment import _slot

    assert _slot("left_eef_angular_vel_yaw", "joints.x.position_slot") == 94
    with pytest.raises(ValueError, match="RDT_ALIASES"):
        _slot("left_eef_angle_6", "joints.x.position_slot")
