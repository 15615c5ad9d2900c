"""Command rows -> each stock driver's message; the streamed trajectory's preview."""

import numpy as np
import pytest

from action_diffusion_policy.runtime import command_outputs as co
from action_diffusion_policy.runtime.ensembler import ChunkEnsembler, EnsemblerConfig
from action_diffusion_policy.runtime.executor import ExecutorCore
from unified_action_space import load_embodiment
from unified_action_space.conversions import stamp_to_seconds


def plans(robot, side="right"):
    return co.plan_outputs(load_embodiment(robot, kinematics=False).arm(side))


def test_interbotix_arm_group_and_gripper_in_radians():
    group, single = plans("aloha")
    row = np.array([0.1, -0.2, 0.3, 0.0, 0.5, -0.6, 1.2])
    msg = group.message(row, 12.5, 0.02)
    assert type(msg).__name__ == "JointGroupCommand" and msg.name == "arm"
    np.testing.assert_allclose(msg.cmd, row[:6], rtol=1e-6)  # float32[]
    msg = single.message(row, 12.5, 0.02)
    assert (msg.name, pytest.approx(msg.cmd)) == ("gripper", 1.2)
    with pytest.raises(ValueError, match="non-finite"):
        group.message(np.full(7, np.nan), 0.0, 0.02)


def test_piper_joint_state_carries_speed_and_gripper_force():
    (plan,) = plans("piper")
    msg = plan.message(np.arange(7) * 0.01, 3.25, 0.02)
    assert list(msg.name) == [f"joint{i}" for i in range(1, 7)] + ["gripper"]
    assert msg.velocity[6] == 100 and msg.effort[6] == 2.0
    assert stamp_to_seconds(msg.header.stamp) == pytest.approx(3.25)


def test_trajectory_starts_on_receipt_and_streams_the_chunk():
    arm_plan, grip_plan = plans("ur5e")
    row = np.linspace(-1, 1, 7)
    single = arm_plan.message(row, 100.0, 0.008)
    # Stamp zero: "start now" for the controller, never a start time that lies in the past.
    assert stamp_to_seconds(single.header.stamp) == 0.0
    assert len(single.points) == 1 and len(single.joint_names) == 6
    traj = np.stack([row + 0.01 * i for i in range(5)])
    msg = arm_plan.message(row, 100.0, 0.008, traj, 0.008)
    times = [stamp_to_seconds(p.time_from_start) for p in msg.points]
    np.testing.assert_allclose(times, 0.008 * np.arange(1, 6))
    np.testing.assert_allclose([p.positions[0] for p in msg.points], traj[:, 0])
    goal = grip_plan.goal(row)
    assert goal.command.position == pytest.approx(row[6]) and goal.command.max_effort == 50.0
    with pytest.raises(ValueError, match="action goal"):
        grip_plan.message(row, 0.0, 0.008)


def test_a_missing_interface_package_names_it_and_the_fix():
    expected = r"'nonexistent_msgs' is not installed.*source"
    with pytest.raises(co.DriverInterfaceError, match=expected):
        co.interface_class("nonexistent_msgs/msg/Thing")


class _State:
    def __init__(self, name, state, interfaces):
        self.name, self.state = name, state
        self.claimed_interfaces = interfaces
        self.required_command_interfaces = interfaces


def test_controller_check_names_the_fix():
    (arm_plan, _) = plans("ur5e")
    out = arm_plan.output
    good = [f"{j}/position" for j in out.joints]
    assert co.controller_problem(out, [_State(out.controller, "active", good)]) == ""
    msg = co.controller_problem(out, [_State(out.controller, "inactive", good)])
    assert "inactive, not active" in msg and "switch_controllers" in msg
    msg = co.controller_problem(out, [_State(out.controller, "active", good[:5])])
    assert "right_wrist_3_joint" in msg
    msg = co.controller_problem(out, [_State("forward_position_controller", "active", good)])
    assert "no controller 'scaled_joint_trajectory_controller'" in msg


@pytest.mark.parametrize("strategy", ["temporal_ensembling", "receding_horizon"])
def test_preview_is_what_action_at_will_give_and_changes_nothing(strategy):
    rng = np.random.default_rng(0)
    ens = ChunkEnsembler([0, 1, 2], EnsemblerConfig(strategy=strategy, receding_steps=4))
    for i in range(4):
        ens.add_chunk(0.1 * i, 0.02, [0, 1, 2], rng.normal(size=(16, 3)))
    now = 0.31
    first, _ = ens.action_at(now)
    counters = dict(ens.counters)
    times = now + 0.02 * np.arange(1, 20)
    ahead = ens.preview(times)
    assert ens.counters == counters
    again, _ = ens.action_at(now)
    np.testing.assert_array_equal(first, again)
    assert np.isnan(ahead[-1]).all()  # past every chunk's end
    if strategy == "temporal_ensembling":  # the future ticks' own ensembled actions
        for t, row in zip(times[:5], ahead[:5]):
            np.testing.assert_allclose(row, ens.action_at(t)[0])


def test_executor_preview_stays_inside_limits_and_speed():
    core = ExecutorCore([0, 1], lower=[-1, -1], upper=[1, 1], max_velocity=[1.0, 1.0],
                        rate_hz=50)  # fmt: skip
    core.set_measured([0.0, 0.0])
    ramp = np.stack([np.linspace(0, 0.3, 16), np.zeros(16)], axis=1)  # 0.02 per step: 1 rad/s
    ramp[10:, 1] = 5.0  # a jump out of the limits from step 10 on
    core.add_chunk(0.0, 0.02, [0, 1], ramp)
    command, status = core.tick(0.0)
    rows = core.preview(0.0, command, status, 32, 0.02)
    assert rows.shape[0] == 16  # the chunk's end: nothing covers later times
    np.testing.assert_allclose(rows[0], command)
    np.testing.assert_allclose(rows[:, 0], ramp[:, 0])  # feasible: streamed as it is
    # The jump is walked at the velocity limit and stops at the position limit.
    assert (np.abs(np.diff(rows, axis=0)) <= 1.0 * 0.02 + 1e-12).all()
    assert rows[:, 1].max() <= 1.0 and rows[-1, 1] == pytest.approx(0.12)
    status.holding = True
    assert core.preview(0.0, command, status, 16, 0.02).shape[0] == 1
