"""Embodiment YAML keys for stock drivers: command_outputs, extra_joint_state_topics,
joint_name_variants, enable_topic; and the state merged from several topics per arm."""

import copy

import numpy as np
import pytest
import yaml

from unified_action_space.embodiment import (
    EmbodimentConfigError,
    embodiment_from_dict,
    load_embodiment,
    resolve_embodiment_path,
)
from unified_action_space.state_assembler import MISSING, STALE, StateAssembler


def sim_dict():
    with open(resolve_embodiment_path("aloha_sim")) as f:
        data = yaml.safe_load(f)
    data.pop("kinematics", None)
    return data


ARM = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"]


def with_outputs(outputs, side="right"):
    data = sim_dict()
    arm = data["arms"][side]
    for key in ("command_topic", "command_type", "command_joint_names"):
        arm.pop(key)
    arm["command_outputs"] = outputs
    return data


def two_outputs():
    return [
        {"topic": "/r/joint_group", "type": "interbotix_xs_msgs/msg/JointGroupCommand",
         "name": "arm", "joints": ARM},
        {"topic": "/r/joint_single", "type": "interbotix_xs_msgs/msg/JointSingleCommand",
         "joints": ["left_finger"], "name": "gripper"},
    ]  # fmt: skip


def test_outputs_split_one_command_row_by_joint():
    emb = embodiment_from_dict(with_outputs(two_outputs()), kinematics=False)
    arm = emb.arm("right")
    assert arm.command_joint_names == (*ARM, "left_finger")
    group, single = arm.command_outputs
    np.testing.assert_array_equal(arm.output_columns(group), np.arange(6))
    np.testing.assert_array_equal(arm.output_columns(single), [6])
    assert single.driver_name == "gripper" and not single.is_action
    # The short form is one output with every commanded joint.
    short = emb.arm("left").command_outputs
    assert len(short) == 1 and short[0].joints == emb.arm("left").command_joint_names
    assert emb.arm("left").command_topic == short[0].topic


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda o: o[1].update(joints=["left_finger", "waist"]), "exactly one joint"),
        (lambda o: o[1].update(joints=["waist"]), "already sent on /r/joint_group"),
        (lambda o: o[0].pop("name"), "names the driver's joint group"),
        (lambda o: o[1].update(type="control_msgs/action/GripperCommand", name=""),
         "force limit > 0"),
        (lambda o: o[0].update(type="sensor_msgs/msg/JointState", velocity=[1.0]),
         "1 values for 6 joints"),
        (lambda o: o[0].update(type="trajectory_msgs/msg/JointTrajectory", controller="jtc"),
         "controller and controller_manager together"),
        (lambda o: o[0].update(stream=True), "only a trajectory_msgs/msg/JointTrajectory"),
        (lambda o: o[0].update(type="foo_msgs/msg/Bar"), "not supported"),
        (lambda o: o[0].update(joints=[*ARM, "nope"]), "'nope' is not one of the arm's joints"),
    ],
)
def test_bad_outputs_are_refused_with_the_key(change, message):
    outputs = two_outputs()
    change(outputs)
    with pytest.raises(EmbodimentConfigError, match=message) as info:
        embodiment_from_dict(with_outputs(outputs), source="my.yaml", kinematics=False)
    assert "my.yaml: arms.right" in str(info.value)


def test_an_explicit_commanded_joint_without_output_is_refused():
    outputs = two_outputs()[:1]
    data = with_outputs(outputs)
    data["arms"]["right"]["command_joint_names"] = [*ARM, "left_finger"]
    with pytest.raises(EmbodimentConfigError, match=r"\['left_finger'\] go out on no output"):
        embodiment_from_dict(data, kinematics=False)


def test_short_and_long_form_together_and_vendor_type_in_short_form_are_refused():
    data = with_outputs(two_outputs())
    data["arms"]["right"]["command_topic"] = "/x"
    with pytest.raises(EmbodimentConfigError, match="either command_outputs or command_topic"):
        embodiment_from_dict(data, kinematics=False)
    data = sim_dict()
    data["arms"]["right"]["command_type"] = "interbotix_xs_msgs/msg/JointGroupCommand"
    with pytest.raises(EmbodimentConfigError, match="vendor types go in command_outputs"):
        embodiment_from_dict(data, kinematics=False)


def test_shipped_real_robots_speak_their_drivers_interfaces():
    aloha = load_embodiment("aloha", kinematics=False).arm("right")
    assert [o.type for o in aloha.command_outputs] == [
        "interbotix_xs_msgs/msg/JointGroupCommand", "interbotix_xs_msgs/msg/JointSingleCommand"]
    assert aloha.joint("gripper").gripper_range == (0.6197, 1.6214)  # ALOHA 2 follower, rad
    piper = load_embodiment("piper", kinematics=False).arm("left")
    (out,) = piper.command_outputs
    assert out.velocity[6] == 100 and 0.5 <= out.effort[6] <= 3.0
    assert piper.enable_topic == "/piper_left/enable_flag"
    ur = load_embodiment("ur5e", kinematics=False).arm("right")
    arm_out, grip_out = ur.command_outputs
    assert len(arm_out.joints) == 6 and arm_out.stream
    assert arm_out.controller == "scaled_joint_trajectory_controller"
    assert grip_out.is_action
    fr3 = load_embodiment("fr3", kinematics=False).arm("right")
    assert fr3.joint_state_topics == ("/right/franka/joint_states",
                                      "/right/franka_gripper/joint_states")  # fmt: skip
    assert "fr3_finger_joint1" not in fr3.command_outputs[0].joints


def test_piper_state_reads_either_driver_versions_names():
    emb = load_embodiment("piper", kinematics=False)
    positions = np.array([0.1, 0.5, -0.4, 0.2, 0.3, -0.1, 0.035])
    new = [f"joint{i}" for i in range(1, 7)] + ["gripper"]
    old = [f"joint{i}" for i in range(7)]
    a, _ = emb.state_from_joint_states({s: (new, positions, None) for s in emb.arm_names})
    b, _ = emb.state_from_joint_states({s: (old, positions, None) for s in emb.arm_names})
    np.testing.assert_array_equal(a, b)
    assert a[emb.arm("right").joint("gripper").position_slot] == pytest.approx(0.5)


def test_fr3_state_merges_arm_and_gripper_topics_each_checked_for_staleness():
    emb = load_embodiment("fr3", kinematics=False)
    asm = StateAssembler(emb, stale_timeout=0.5, fk=False)
    arm_names = [f"fr3_joint{i}" for i in range(1, 8)]
    q = np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8])
    ms = 1_000_000
    for side in emb.arm_names:
        asm.update(side, arm_names, q, None, 0, 0)
    state, problems = asm.assemble(10 * ms)
    assert state is None and problems["right"].kind == MISSING
    assert "/right/franka_gripper/joint_states" in problems["right"].text
    fingers = ["fr3_finger_joint1", "fr3_finger_joint2"]
    for side in emb.arm_names:
        asm.update(side, fingers, [0.02, 0.02], None, 0, 0,
                   topic=f"/{side}/franka_gripper/joint_states")  # fmt: skip
    state, problems = asm.assemble(10 * ms)
    assert not problems
    finger = emb.arm("left").joint("fr3_finger_joint1")
    assert state.values[finger.position_slot] == pytest.approx(0.5)
    # The arm keeps publishing, the gripper goes silent: stale, naming the gripper topic.
    for side in emb.arm_names:
        asm.update(side, arm_names, q, None, 1, 900 * ms)
    state, problems = asm.assemble(1000 * ms)
    assert state is None and problems["right"].kind == STALE
    assert "franka_gripper" in problems["right"].text
    with pytest.raises(ValueError, match="takes joint states on"):
        asm.update("right", fingers, [0, 0], None, 0, 0, topic="/elsewhere")


def test_bad_variant_and_extra_topic_are_refused():
    data = copy.deepcopy(sim_dict())
    data["arms"]["right"]["joint_name_variants"] = [["a", "b"]]
    with pytest.raises(EmbodimentConfigError, match="must name each of the 7 joints"):
        embodiment_from_dict(data, kinematics=False)
    data = sim_dict()
    data["arms"]["right"]["extra_joint_state_topics"] = [data["arms"]["right"]["joint_state_topic"]]
    with pytest.raises(EmbodimentConfigError, match="listed twice"):
        embodiment_from_dict(data, kinematics=False)
