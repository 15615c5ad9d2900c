"""Embodiment configs: loading, validation errors, the state/command mapping and FK."""

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unified_action_space import (
    EmbodimentConfigError,
    JointStateError,
    list_embodiments,
    load_embodiment,
)
from unified_action_space.embodiment import OUTPUT_TYPES, resolve_embodiment_path
from unified_action_space.layout import slot_index

SHIPPED = ("aloha", "aloha_sim", "piper", "ur5e", "fr3")
ALOHA_NAMES = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate",
               "left_finger", "right_finger"]  # fmt: skip


@pytest.fixture(scope="module")
def embodiments():
    return {name: load_embodiment(name) for name in SHIPPED}


def test_shipped_embodiments_are_listed():
    assert set(SHIPPED) <= set(list_embodiments())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_embodiment_basics(embodiments, name):
    emb = embodiments[name]
    assert emb.name == name
    assert emb.control_frequency > 0
    assert emb.arm_names == ("right", "left")
    assert np.all(np.diff(emb.action_slots) > 0)
    assert emb.state_mask.shape == (128,) and emb.state_mask.dtype == bool
    assert emb.state_mask[emb.action_slots].all()
    assert emb.state_mask[slot_index("right_gripper_open")]
    assert emb.state_mask[slot_index("left_gripper_open")]
    lim = emb.position_limits_unified
    assert lim.shape == (len(emb.action_slots), 2) and np.all(lim[:, 0] < lim[:, 1])
    grip = np.isin(emb.action_slots, [10, 60])
    assert np.all(lim[grip] >= 0) and np.all(lim[grip] <= 1)
    assert np.all(emb.max_velocity_unified > 0)
    for arm in emb.arms:
        assert all(o.type in OUTPUT_TYPES for o in arm.command_outputs)
        assert arm.joint_state_topic.startswith("/") and arm.command_topic.startswith("/")
    # Only the ALOHA configs carry a kinematic model; the others mask the EEF slots out.
    eef = [slot_index("right_eef_pos_x"), slot_index("left_eef_rot6d_5")]
    assert emb.has_kinematics == name.startswith("aloha")
    assert emb.state_mask[eef].all() == name.startswith("aloha")


def test_aloha_contract_from_architecture(embodiments):
    for name in ("aloha", "aloha_sim"):
        emb = embodiments[name]
        for side in ("left", "right"):
            arm = emb.arm(side)
            assert arm.joint_state_topic == f"/follower_{side}/joint_states"
            if name == "aloha_sim":
                assert arm.command_topic == f"/follower_{side}/commands/joint_positions"
                assert arm.command_type == "std_msgs/msg/Float64MultiArray"
                assert arm.command_joint_names == tuple(ALOHA_NAMES[:7])
                assert arm.joint("left_finger").gripper_range == (0.01844, 0.058)
            else:  # the Interbotix xs_sdk driver: arm group + gripper joint in rad
                assert [o.topic for o in arm.command_outputs] == [
                    f"/follower_{side}/commands/joint_group",
                    f"/follower_{side}/commands/joint_single"]  # fmt: skip
                assert arm.command_joint_names == (*ALOHA_NAMES[:6], "gripper")
        assert emb.control_frequency == 50.0


def _mid_state(emb):
    """Joint states at the middle of every joint's range, plus an unknown extra joint."""
    states = {}
    for arm in emb.arms:
        lim = np.array([j.position_limits for j in arm.joints])
        names = [*arm.joint_names, "not_in_config"]
        states[arm.name] = (names, [*lim.mean(axis=1), 123.0], [0.1] * len(names))
    return states


@pytest.mark.parametrize("name", SHIPPED)
def test_state_values_units_and_mask(embodiments, name):
    emb = embodiments[name]
    values, mask = emb.state_from_joint_states(_mid_state(emb))
    assert values.dtype == np.float32 and mask.dtype == bool
    np.testing.assert_array_equal(mask, emb.state_mask)
    assert np.all(values[~mask] == 0)
    for arm in emb.arms:
        for joint in arm.joints:
            mid = sum(joint.position_limits) / 2
            expected = mid
            if joint.gripper_range is not None:
                lo, hi = joint.gripper_range
                expected = (mid - lo) / (hi - lo)
                assert math.isclose(values[joint.velocity_slot], 0.1 / (hi - lo), rel_tol=1e-5)
            else:
                assert math.isclose(values[joint.velocity_slot], 0.1, rel_tol=1e-6)
            assert math.isclose(values[joint.position_slot], expected, rel_tol=1e-6, abs_tol=1e-6)


def test_state_without_velocities_masks_velocity_slots(embodiments):
    emb = embodiments["piper"]
    states = {k: (n, p, None) for k, (n, p, _) in _mid_state(emb).items()}
    states["left"] = (states["left"][0], states["left"][1], [])  # empty, as JointState allows
    values, mask = emb.state_from_joint_states(states)
    vel = [slot_index("right_arm_joint_0_vel"), slot_index("left_gripper_open_vel")]
    assert not mask[vel].any() and np.all(values[vel] == 0)
    assert mask[emb.action_slots].all()


def test_piper_driver_with_six_velocities_for_seven_joints(embodiments):
    """PiPER's driver publishes joint1-6 + gripper with velocities for joint1-6 only."""
    emb = embodiments["piper"]
    names = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "gripper"]
    q = [0.1, 1.0, -1.0, 0.2, 0.3, 0.4, 0.035]
    vel = [0.5, -0.5, 0.25, 0.0, 0.1, -0.1]
    arms = ("left", "right")
    values, mask = emb.state_from_joint_states({side: (names, q, vel) for side in arms})
    for side in arms:
        joint0 = slot_index(f"{side}_arm_joint_0_vel")
        joint5 = slot_index(f"{side}_arm_joint_5_vel")
        assert mask[joint0] and values[joint0] == pytest.approx(0.5)
        assert mask[joint5] and values[joint5] == pytest.approx(-0.1)
        gripper_vel = slot_index(f"{side}_gripper_open_vel")
        assert not mask[gripper_vel] and values[gripper_vel] == 0.0
    assert mask[emb.action_slots].all()
    # More velocities than names is still malformed.
    with pytest.raises(JointStateError, match="velocity array has shape"):
        emb.state_from_joint_states({side: (names, q, [*vel, 0.0, 0.0]) for side in arms})


def test_gripper_normalization_aloha(embodiments):
    emb = embodiments["aloha_sim"]
    q = np.zeros(8)
    for finger, expected in ((0.01844, 0.0), (0.058, 1.0), ((0.01844 + 0.058) / 2, 0.5)):
        q[6] = finger
        values, _ = emb.state_from_joint_states(
            {side: (ALOHA_NAMES, q, None) for side in ("left", "right")}, fk=False
        )
        assert values[10] == pytest.approx(expected, abs=1e-6)
        assert values[60] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("name", SHIPPED)
def test_state_to_commands_identity_property(embodiments, name):
    emb = embodiments[name]
    arms = emb.arms
    sizes = [len(a.joints) for a in arms]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        fractions=st.lists(
            st.floats(0.0, 1.0, allow_nan=False), min_size=sum(sizes), max_size=sum(sizes)
        ),
        permute=st.permutations(range(max(sizes))),
    )
    def check(fractions, permute):
        frac = iter(fractions)
        states, expected = {}, {}
        for arm in arms:
            lim = np.array([j.position_limits for j in arm.joints])
            f = np.array([next(frac) for _ in arm.joints])
            q = lim[:, 0] + f * (lim[:, 1] - lim[:, 0])
            order = [i for i in permute if i < len(q)]  # drivers publish in any order
            states[arm.name] = ([arm.joint_names[i] for i in order], q[order], None)
            expected[arm.name] = np.array([q[arm.joint_names.index(n)]
                                           for n in arm.command_joint_names])  # fmt: skip
        values, _ = emb.state_from_joint_states(states, fk=False)
        commands = emb.commands_from_actions(values[None])
        k_cols = emb.commands_from_actions(values[emb.action_slots][None])
        for arm in arms:
            # float32 storage of the unified vector bounds the error (|q| <= 2 pi).
            np.testing.assert_allclose(commands[arm.name][0], expected[arm.name], atol=2e-6)
            np.testing.assert_array_equal(k_cols[arm.name], commands[arm.name])
        back = emb.actions_from_commands({a: c for a, c in commands.items()})
        np.testing.assert_allclose(back[0, emb.action_slots], values[emb.action_slots], atol=1e-6)

    check()


def test_commands_clip_and_column_orders(embodiments):
    emb = embodiments["aloha_sim"]
    actions = np.zeros((64, 128), dtype=np.float32)
    actions[:, slot_index("right_arm_joint_1_pos")] = -5.0  # below shoulder limit
    actions[:, slot_index("left_gripper_open")] = 2.0  # beyond fully open
    commands = emb.commands_from_actions(actions)
    assert set(commands) == {"right", "left"}
    assert commands["right"].shape == (64, 7) and commands["right"].dtype == np.float64
    assert np.all(commands["right"][:, 1] == -1.85005)
    assert np.all(commands["left"][:, 6] == 0.057)  # the finger's joint limit, in metres
    # (H, k) with explicit slot indices in a shuffled order gives the same commands.
    rng = np.random.default_rng(0)
    full = rng.uniform(-0.5, 0.5, size=(8, 128))
    slots = rng.permutation(np.concatenate([emb.action_slots, [100, 30]]))
    shuffled = emb.commands_from_actions(full[:, slots], slot_indices=slots)
    direct = emb.commands_from_actions(full)
    for arm in ("left", "right"):
        np.testing.assert_array_equal(shuffled[arm], direct[arm])
    one = emb.commands_from_actions(full[0])
    np.testing.assert_array_equal(one["left"], direct["left"][0])


def test_commands_reject_bad_actions(embodiments):
    emb = embodiments["ur5e"]
    with pytest.raises(ValueError, match="columns"):
        emb.commands_from_actions(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="lack commanded slot"):
        emb.commands_from_actions(np.zeros((4, 2)), slot_indices=[0, 1])
    actions = np.zeros((4, 128))
    actions[2, slot_index("left_arm_joint_3_pos")] = np.nan
    with pytest.raises(ValueError, match=r"step 2 .*'left'.*left_wrist_1_joint"):
        emb.commands_from_actions(actions)


def test_ur5e_gripper_runs_closed_to_open(embodiments):
    emb = embodiments["ur5e"]
    actions = np.zeros((2, 128))
    actions[0, 10], actions[1, 10] = 0.0, 1.0
    right = emb.commands_from_actions(actions)["right"]
    assert right[0, 6] == pytest.approx(0.8) and right[1, 6] == pytest.approx(0.0)


# ------------------------------------------------------------------ bad joint states


def _aloha_states(q=None):
    q = np.zeros(8) if q is None else q
    return {side: (list(ALOHA_NAMES), np.array(q, float), None) for side in ("left", "right")}


def test_missing_joint_names_arm_and_joint(embodiments):
    emb = embodiments["aloha_sim"]
    states = _aloha_states()
    names = [n for n in ALOHA_NAMES if n != "elbow"]
    states["left"] = (names, np.zeros(len(names)), None)
    with pytest.raises(JointStateError, match=r"'left'.*'elbow'") as info:
        emb.state_from_joint_states(states)
    assert info.value.arm == "left" and info.value.joint == "elbow"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_position_rejected(embodiments, bad):
    emb = embodiments["aloha_sim"]
    q = np.zeros(8)
    q[4] = bad
    states = _aloha_states()
    states["right"] = (list(ALOHA_NAMES), q, None)
    with pytest.raises(JointStateError, match=r"'right'.*'wrist_angle'") as info:
        emb.state_from_joint_states(states)
    assert info.value.joint == "wrist_angle"


def test_non_finite_velocity_rejected_but_unknown_joint_ignored(embodiments):
    emb = embodiments["aloha_sim"]
    states = _aloha_states()
    vel = np.zeros(8)
    vel[7] = np.nan  # right_finger is not in the config: ignored
    states["left"] = (list(ALOHA_NAMES), np.zeros(8), vel)
    emb.state_from_joint_states(states, fk=False)
    vel[0] = np.inf
    with pytest.raises(JointStateError, match=r"'left'.*'waist' velocity"):
        emb.state_from_joint_states(states, fk=False)


def test_missing_arm_and_length_mismatch(embodiments):
    emb = embodiments["aloha_sim"]
    states = _aloha_states()
    del states["right"]
    with pytest.raises(JointStateError, match="'right': no joint state"):
        emb.state_from_joint_states(states)
    states = _aloha_states()
    states["right"] = (list(ALOHA_NAMES), np.zeros(5), None)
    with pytest.raises(JointStateError, match="shape"):
        emb.state_from_joint_states(states)


# ------------------------------------------------------------------ FK


def test_aloha_fk_matches_the_model_geometry(embodiments):
    """At zero joint angles the ViperX gripper_link sits at the sum of the link offsets of the
    vx300s model (x: 0.05955 + 0.2 + 0.1 + 0.069744, z: 0.079 + 0.04805 + 0.3), unrotated."""
    emb = embodiments["aloha_sim"]
    values, mask = emb.state_from_joint_states(_aloha_states(np.r_[np.zeros(6), 0.03, -0.03]))
    for off in (0, 50):  # right, left
        np.testing.assert_allclose(values[off + 30 : off + 33], [0.429294, 0, 0.42705], atol=1e-5)
        np.testing.assert_allclose(values[off + 33 : off + 39], [1, 0, 0, 0, 1, 0], atol=1e-6)
        assert mask[off + 30 : off + 39].all()
    # Turning the waist by +90 deg swings the end effector onto the base's +y axis.
    q = np.r_[math.pi / 2, np.zeros(5), 0.03, -0.03]
    values, _ = emb.state_from_joint_states(_aloha_states(q))
    np.testing.assert_allclose(values[30:33], [0, 0.429294, 0.42705], atol=1e-5)
    # And FK off gives a masked-out EEF.
    values, mask = emb.state_from_joint_states(_aloha_states(q), fk=False)
    assert not mask[30:39].any() and np.all(values[30:39] == 0)


def test_fk_rotation_is_a_rotation(embodiments):
    emb = embodiments["aloha"]
    rng = np.random.default_rng(3)
    lim = np.array([j.position_limits for j in emb.arm("left").joints])
    for _ in range(20):
        q = rng.uniform(lim[:, 0], lim[:, 1])
        poses = emb.eef_poses({"left": q, "right": q})
        rot = poses["left"][:3, :3]
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)
        assert np.linalg.norm(poses["left"][:3, 3]) < 0.8  # reach of a ViperX 300


def test_kinematics_can_be_skipped():
    emb = load_embodiment("aloha_sim", kinematics=False)
    assert not emb.has_kinematics and not emb.state_mask[30:39].any()


# ------------------------------------------------------------------ config validation


@pytest.fixture(scope="module")
def aloha_dict():
    return yaml.safe_load(resolve_embodiment_path("aloha_sim").read_text())


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# Camera name -> driver topic of every shipped embodiment (what the bringup remapped to before
# the table moved into the embodiment YAML).
SHIPPED_CAMERAS = {
    "aloha": "/{}/camera/color/image_rect_raw",
    "aloha_sim": "/cameras/{}/image_raw",
    "ur5e": "/cameras/{}/color/image_raw",
    "fr3": "/cameras/{}/color/image_raw",
}
PIPER_CAMERAS = {"cam_high": "/camera_f/color/image_raw",
                 "cam_left_wrist": "/camera_l/color/image_raw",
                 "cam_right_wrist": "/camera_r/color/image_raw"}  # fmt: skip


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_cameras(embodiments, name):
    emb = embodiments[name]
    names = ("cam_high", "cam_left_wrist", "cam_right_wrist")
    expected = PIPER_CAMERAS if name == "piper" else {
        c: SHIPPED_CAMERAS[name].format(c) for c in names}  # fmt: skip
    assert emb.camera_topics == expected
    for camera in emb.cameras.values():
        assert camera.type == "raw" and camera.message_type == "sensor_msgs/msg/Image"
        assert camera.subscription() == (camera.topic, "sensor_msgs/msg/Image")
        assert camera.subscription(compressed=True) == (
            f"{camera.topic}/compressed", "sensor_msgs/msg/CompressedImage")  # fmt: skip
    with pytest.raises(KeyError, match=r"no camera 'cam_low'.*cam_high"):
        emb.camera("cam_low")


def test_compressed_camera_and_no_cameras(tmp_path, aloha_dict):
    data = copy.deepcopy(aloha_dict)
    del data["kinematics"]
    data["cameras"] = {"front": {"topic": "/front/image/compressed", "type": "compressed"}}
    front = load_embodiment(_write(tmp_path, data)).camera("front")
    assert front.message_type == "sensor_msgs/msg/CompressedImage"
    # A compressed-only driver has one topic, whatever the subscriber prefers.
    assert front.subscription() == front.subscription(compressed=True) == (
        "/front/image/compressed", "sensor_msgs/msg/CompressedImage")  # fmt: skip
    del data["cameras"]
    assert load_embodiment(_write(tmp_path, data)).cameras == {}


def test_user_config_by_path(tmp_path, aloha_dict):
    data = copy.deepcopy(aloha_dict)
    data.pop("name")
    del data["kinematics"]
    emb = load_embodiment(_write(tmp_path, data))
    assert emb.name == "robot" and not emb.has_kinematics


def test_unknown_embodiment_lists_known_ones():
    with pytest.raises(EmbodimentConfigError, match=r"unknown embodiment 'tiago'.*aloha.*fr3"):
        load_embodiment("tiago")
    with pytest.raises(EmbodimentConfigError, match="does not exist"):
        load_embodiment("/nonexistent/robot.yaml")


def _mutations():
    def joint(data, arm="left", name="elbow"):
        return data["arms"][arm]["joints"][name]

    def dup_slot(d):
        joint(d)["position_slot"] = "left_arm_joint_0_pos"
        joint(d).pop("velocity_slot")

    def pos_in_vel_slot(d):
        joint(d)["position_slot"] = "left_arm_joint_2_vel"
        joint(d).pop("velocity_slot")

    def vel_in_wrong_slot(d):
        joint(d)["velocity_slot"] = "left_arm_joint_3_vel"

    def missing_limit(d):
        joint(d).pop("position_limits")

    def missing_vel_limit(d):
        joint(d).pop("velocity_limit")

    def zero_gripper(d):
        joint(d, name="left_finger")["gripper_range"] = [0.03, 0.03]

    def missing_gripper_range(d):
        joint(d, name="left_finger").pop("gripper_range")

    def wrong_side(d):
        joint(d)["position_slot"] = "right_arm_joint_9_pos"
        joint(d).pop("velocity_slot")

    def bad_command_type(d):
        d["arms"]["left"]["command_type"] = "std_msgs/msg/Float32MultiArray"

    def unknown_command_joint(d):
        d["arms"]["left"]["command_joint_names"][0] = "wasit"

    def unknown_slot(d):
        joint(d)["position_slot"] = "left_arm_joint_12_pos"

    def typo_key(d):
        joint(d)["velocity_limt"] = 1.0

    def inverted_limits(d):
        joint(d)["position_limits"] = [1.0, -1.0]

    def bad_frequency(d):
        d["control_frequency"] = 0

    def bad_arm(d):
        d["arms"]["middle"] = d["arms"].pop("left")

    def relative_camera_topic(d):
        d["cameras"]["cam_high"]["topic"] = "cameras/cam_high/image_raw"

    def bad_camera_type(d):
        d["cameras"]["cam_high"]["type"] = "jpeg"

    def camera_without_type(d):
        d["cameras"]["cam_high"].pop("type")

    def bad_camera_name(d):
        d["cameras"]["cam-high"] = d["cameras"].pop("cam_high")

    return [
        (dup_slot, r"arms\.left\.joints\.elbow\.position_slot.*already filled.*'waist'"),
        (pos_in_vel_slot, r"arms\.left\.joints\.elbow\.position_slot.*joint_vel slot"),
        (vel_in_wrong_slot, r"arms\.left\.joints\.elbow\.velocity_slot.*left_arm_joint_2_vel"),
        (missing_limit, r"arms\.left\.joints\.elbow\.position_limits: missing"),
        (missing_vel_limit, r"arms\.left\.joints\.elbow\.velocity_limit: missing"),
        (zero_gripper, r"arms\.left\.joints\.left_finger\.gripper_range: zero width"),
        (missing_gripper_range, r"arms\.left\.joints\.left_finger\.gripper_range: missing"),
        (wrong_side, r"arms\.left\.joints\.elbow\.position_slot.*right arm"),
        (bad_command_type, r"arms\.left\.command_type.*Float32MultiArray"),
        (unknown_command_joint, r"arms\.left\.command_joint_names.*'wasit'"),
        (unknown_slot, r"arms\.left\.joints\.elbow\.position_slot.*unknown unified slot"),
        (typo_key, r"arms\.left\.joints\.elbow: unknown key.*velocity_limt"),
        (inverted_limits, r"arms\.left\.joints\.elbow\.position_limits: lower must be < upper"),
        (bad_frequency, r"control_frequency must be a positive"),
        (bad_arm, r"arms: unknown key.*'middle'"),
        (relative_camera_topic, r"cameras\.cam_high\.topic: 'cameras/cam_high/image_raw'"),
        (bad_camera_type, r"cameras\.cam_high\.type: 'jpeg' not supported.*'raw', 'compressed'"),
        (camera_without_type, r"cameras\.cam_high\.type: missing"),
        (bad_camera_name, r"cameras\.cam-high: camera name 'cam-high' is not a ROS name"),
    ]


@pytest.mark.parametrize("mutate,message", _mutations(), ids=lambda x: getattr(x, "__name__", ""))
def test_bad_config_names_file_and_key(tmp_path, aloha_dict, mutate, message):
    data = copy.deepcopy(aloha_dict)
    del data["kinematics"]  # keep these fast; validation does not depend on it
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(EmbodimentConfigError, match=message) as info:
        load_embodiment(path, kinematics=False)
    assert str(path) in str(info.value)


def test_bad_kinematics_section(tmp_path, aloha_dict):
    data = copy.deepcopy(aloha_dict)
    data["kinematics"]["arms"]["left"]["eef_body"] = "vx300s_left/no_such_link"
    with pytest.raises(EmbodimentConfigError, match="no_such_link"):
        load_embodiment(_write(tmp_path, data))
    data = copy.deepcopy(aloha_dict)
    data["kinematics"]["model_package"] = "no_such_python_package"
    with pytest.raises(EmbodimentConfigError, match=r"kinematics.*no_such_python_package"):
        load_embodiment(_write(tmp_path, data))


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("arms: [unclosed\n")
    with pytest.raises(EmbodimentConfigError, match=r"broken\.yaml.*not valid YAML"):
        load_embodiment(path)


def test_state_eef_slots_agree_with_eef_poses(embodiments):
    """The fused hot-path FK (position + 6D straight into the slots) matches the 4x4 poses."""
    from unified_action_space.layout import rotation_matrix_to_6d

    emb = embodiments["aloha_sim"]
    rng = np.random.default_rng(5)
    lim = np.array([j.position_limits for j in emb.arm("left").joints])
    for _ in range(10):
        q = {side: rng.uniform(lim[:, 0], lim[:, 1]) for side in ("left", "right")}
        values, _ = emb.state_from_joint_states(
            {side: (ALOHA_NAMES[:7], q[side], None) for side in q}
        )
        poses = emb.eef_poses(q)
        for side, off in (("right", 0), ("left", 50)):
            np.testing.assert_allclose(values[off + 30 : off + 33], poses[side][:3, 3], atol=1e-6)
            np.testing.assert_allclose(
                values[off + 33 : off + 39], rotation_matrix_to_6d(poses[side][:3, :3]), atol=1e-6
            )
