"""The real bringups against stand-ins of the stock drivers (standin_drivers.py, TEST ONLY).

Each test starts the `real` bringup's own nodes for the robot (unified_state_node and
action_executor with real.yaml: disabled at start, ramped) through the launch-free runner, and a
stand-in of that robot's driver. The test plays the policy: it publishes ActionChunks to a pose.
It checks the executor refuses to start while the driver cannot take commands (naming the
topic and what the driver expects), that enabling works once it can, that the driver accepts
every command, and that the arms reach the commanded pose in the driver's units.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from action_diffusion_bringup import description as d  # noqa: E402
from action_diffusion_bringup import run  # noqa: E402
from action_diffusion_bringup.testing import standin_drivers as sd  # noqa: E402
from action_diffusion_bringup.testing.standin_drivers import Harness, Spinning  # noqa: E402
from unified_action_space import load_embodiment  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture
def ros(tmp_path):
    rclpy.init()
    spin = Spinning()
    runners = []
    yield spin, runners
    for runner in runners:
        runner.stop()
    spin.close()
    rclpy.shutdown()


def start_bringup(robot: str, runners: list, **executor_params):
    """The real bringup's nodes but the policy; ``executor_params`` on top of real.yaml."""
    from action_diffusion_bringup.sim_client import with_parameters

    checkpoint = d.checkpoints_dir() / "transfer_cube_camera"
    specs = [s for s in d.describe("real", {"robot": robot, "checkpoint": str(checkpoint)})
             if s.name != "policy"]  # fmt: skip
    assert {s.name for s in specs} == {"unified_state", "action_executor"}
    if executor_params:
        specs = with_parameters(specs, "action_executor", **executor_params)
    runner = run.BringupRunner(specs, stop_timeout=5.0)
    runners.append(runner)
    runner.start()
    return runner


def driver_text(harness) -> str:
    return harness.diagnostics.get("driver", "")


def drive_to_pose(harness, driver, emb, offsets, timeout=20.0, during=None):
    """Enable, then stream chunks to home + ``offsets`` (raw units, per command row) until the
    stand-in's joints are there; ``during()`` is called once, 0.5 s into the motion. Returns the
    raw target rows per arm."""
    home = {}
    with driver.lock:
        for arm in emb.arms:
            servo = driver.arms[_namespace(arm)]
            home[arm.name] = np.array([servo.get(n) for n in arm.command_joint_names])
    target_rows = {}
    for arm in emb.arms:
        lim = arm.command_position_limits
        target_rows[arm.name] = np.clip(home[arm.name] + offsets(arm), lim[:, 0], lim[:, 1])
    target = emb.actions_from_commands(target_rows)[emb.action_slots]
    reply = harness.enable()
    assert reply.success, reply.message
    started = time.monotonic()
    pending = [during] if during else []

    def there() -> bool:
        harness.send_pose(emb, target)
        if pending and time.monotonic() - started > 0.5:
            pending.pop()()
        with driver.lock:
            return all(
                np.allclose([driver.arms[_namespace(a)].get(n) for n in a.command_joint_names],
                            target_rows[a.name], atol=2e-3)
                for a in emb.arms
            )  # fmt: skip

    assert sd.wait(there, timeout, period=0.1), (harness.diagnostics, driver.record.rejected)
    return target_rows


def _namespace(arm) -> str:
    return arm.joint_state_topic.split("/")[1]


def _arm_offsets(gripper_delta, arm_delta=0.15):
    def offsets(arm):
        out = np.full(len(arm.command_joint_names), arm_delta)
        for i, name in enumerate(arm.command_joint_names):
            if arm.joint(name).gripper_range is not None:
                out[i] = gripper_delta
        return out

    return offsets


def test_driver_aloha(ros):
    spin, runners = ros
    emb = load_embodiment("aloha", kinematics=False)
    harness = spin.add(Harness())
    start_bringup("aloha", runners)
    # No driver yet: nothing may go out, and the log and diagnostics say what is missing.
    assert sd.wait(lambda: "nothing subscribes" in driver_text(harness), 30.0), harness.diagnostics
    text = driver_text(harness)
    assert "/follower_right/commands/joint_group" in text
    assert "interbotix_xs_msgs/msg/JointGroupCommand" in text
    assert not harness.enable().success
    # An ALOHA 1 gripper (another range) reads outside ALOHA 2's: refused, naming the range.
    driver = spin.add(sd.InterbotixStandIn(gripper_rad=0.2))
    assert sd.wait(lambda: "gripper_range" in driver_text(harness), 20.0), harness.diagnostics
    reply = harness.enable()
    assert not reply.success and "outside its gripper_range" in reply.message
    with driver.lock:
        for arm in driver.arms.values():
            arm.position[6] = arm.target[6] = 1.0
    assert sd.wait(lambda: driver_text(harness) == "ready", 20.0), harness.diagnostics
    targets = drive_to_pose(harness, driver, emb, _arm_offsets(-0.3))
    assert driver.record.rejected == []
    for ns in ("follower_left", "follower_right"):
        assert driver.record.accepted[f"{ns}/joint_group"] > 5
        single = driver.record.last[f"{ns}/joint_single"]
        assert single.name == "gripper" and 0.6197 <= single.cmd <= 1.6214  # rad
    assert targets["right"][6] == pytest.approx(0.7, abs=1e-6)
    # The stand-in refuses what xs_sdk refuses: a group command of the wrong size.
    from interbotix_xs_msgs.msg import JointGroupCommand

    pub = harness.create_publisher(JointGroupCommand, "/follower_left/commands/joint_group", 10)
    assert sd.wait(lambda: pub.get_subscription_count() > 0, 5.0)
    pub.publish(JointGroupCommand(name="arm", cmd=[0.0] * 7))
    assert sd.wait(lambda: driver.record.rejected, 5.0)
    assert "Number of commands (7) does not match" in driver.record.rejected[0][1]


def test_driver_piper(ros):
    spin, runners = ros
    emb = load_embodiment("piper", kinematics=False)
    harness = spin.add(Harness())
    driver = spin.add(sd.PiperStandIn(auto_enable=False))
    # The stand-in drops commands until its arm is enabled, as piper_ros does.
    from sensor_msgs.msg import JointState

    pub = harness.create_publisher(JointState, "/piper_left/joint_ctrl_single", 10)
    assert sd.wait(lambda: pub.get_subscription_count() > 0, 5.0)
    pub.publish(JointState(name=list(sd.PIPER_JOINTS), position=[0.5] * 7))
    assert sd.wait(lambda: driver.dropped_before_enable["piper_left"] == 1, 5.0)
    harness.destroy_publisher(pub)
    # With a deadman (real.yaml's heartbeat_timeout set, as a user would): no heartbeat, no
    # motion; and the first motion is the 2 s ramp from 10 % of the velocity limits.
    start_bringup("piper", runners, heartbeat_timeout=0.3)
    assert sd.wait(lambda: driver_text(harness) == "ready", 30.0), harness.diagnostics
    from std_msgs.msg import Bool

    deadman = harness.create_publisher(Bool, "/deadman", 10)
    with driver.lock:
        start = driver.arms["piper_left"].position.copy()
    assert harness.enable().success
    for _ in range(10):  # 1 s of chunks far away, without the deadman
        harness.send_pose(emb, np.zeros(len(emb.action_slots)))
        time.sleep(0.1)
    assert harness.diagnostics.get("hold_reason") == "heartbeat_lost", harness.diagnostics
    with driver.lock:
        assert np.allclose(driver.arms["piper_left"].position, start, atol=1e-3)
    assert harness.enable(False).success
    stop = threading.Event()

    def press():  # the operator keeps the deadman pressed from here on
        while not stop.is_set():
            deadman.publish(Bool(data=True))
            time.sleep(0.05)

    threading.Thread(target=press, daemon=True).start()
    try:
        t0 = time.monotonic()
        ramp = {}

        def after_ramp_start():  # 0.5 s into the motion
            with driver.lock:
                ramp["moved"] = float(np.abs(driver.arms["piper_left"].position[:6]
                                             - start[:6]).max())  # fmt: skip
            ramp["s"] = time.monotonic() - t0

        drive_to_pose(harness, driver, emb, _arm_offsets(0.01, arm_delta=0.6),
                      during=after_ramp_start)  # fmt: skip
    finally:
        stop.set()
    # At full speed (3 rad/s) the 0.6 rad move is over after 0.2 s; the ramp (speed fraction
    # 0.1 + 0.45 t) allows 3 (0.1 t + 0.225 t^2) = 0.32 rad by 0.5 s.
    assert ramp["moved"] < 0.45, ramp
    assert driver.record.rejected == []
    for ns in ("piper_left", "piper_right"):
        assert driver.enabled[ns]  # ~/enable published true on enable_flag
        assert driver.speed_percent[ns] == 100 and driver.gripper_force[ns] == 2.0
        last = driver.record.last[f"{ns}/joint_ctrl_single"]
        assert list(last.name) == list(sd.PIPER_JOINTS)


def test_driver_ur5e(ros):
    spin, runners = ros
    emb = load_embodiment("ur5e", kinematics=False)
    harness = spin.add(Harness())
    driver = sd.Ros2ControlStandIn("ur_standin", sd.ur_robots())
    for ns in ("left", "right"):
        driver.controllers[ns]["scaled_joint_trajectory_controller"].state = "inactive"
    spin.add(driver)
    runner = start_bringup("ur5e", runners)
    assert sd.wait(lambda: "is inactive, not active" in driver_text(harness), 30.0), (
        harness.diagnostics)
    assert "switch_controllers" in driver_text(harness)
    assert not harness.enable().success
    for ns in ("left", "right"):
        driver.controllers[ns]["scaled_joint_trajectory_controller"].state = "active"
    assert sd.wait(lambda: driver_text(harness) == "ready", 20.0), harness.diagnostics
    stall = {}

    def stop_the_executor_for_a_while():
        # SIGSTOP the executor process mid-motion: no Python tick at all for 0.2 s. The
        # controller goes on along the streamed chunk at its own rate, so the arm does not
        # stop (a one-point trajectory per tick would leave it standing after one tick).
        # On a loaded machine the stand-in's own loop may barely run during one stall: stall
        # again (the arms still moving) until it ran enough cycles to tell.
        pid = runner.pids["action_executor"]
        for _ in range(4):
            with driver.lock:
                cycles, changes = driver.control_cycles, driver.setpoint_changes
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(0.2)
            finally:
                with driver.lock:
                    stall["cycles"] = driver.control_cycles - cycles
                    stall["changes"] = driver.setpoint_changes - changes
                os.kill(pid, signal.SIGCONT)
            if stall["cycles"] >= 10:
                break
            time.sleep(0.1)  # the executor streams a fresh trajectory

    drive_to_pose(harness, driver, emb, _arm_offsets(0.3, arm_delta=1.2),
                  during=stop_the_executor_for_a_while)  # fmt: skip
    assert driver.record.rejected == []
    last = driver.record.last["right/scaled_joint_trajectory_controller"]
    assert (last.header.stamp.sec, last.header.stamp.nanosec) == (0, 0)  # start on receipt
    assert len(last.joint_names) == 6
    assert driver.record.accepted["right/robotiq_gripper_controller"] >= 1
    assert stall["cycles"] >= 10 and stall["changes"] >= 0.8 * stall["cycles"], stall
    # A trajectory stamped in the past is refused, as joint_trajectory_controller refuses it
    # (the executor disabled first: its 125 Hz stream must not crowd these out of the queue).
    assert harness.enable(False).success
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    pub = harness.create_publisher(JointTrajectory, "/left/scaled_joint_trajectory_controller/"
                                   "joint_trajectory", 10)  # fmt: skip
    assert sd.wait(lambda: pub.get_subscription_count() > 0, 5.0)
    late = JointTrajectory(joint_names=list(emb.arm("left").command_outputs[0].joints))
    late.header.stamp = (harness.get_clock().now() - rclpy.duration.Duration(seconds=1)).to_msg()
    point = JointTrajectoryPoint(positions=[0.0] * 6)
    point.time_from_start.nanosec = 8_000_000
    late.points = [point]
    pub.publish(late)
    assert sd.wait(lambda: driver.record.rejected, 5.0)
    assert "that ends in the past" in driver.record.rejected[0][1]
    # ... and so is a joint the controller does not have (a YAML with the wrong tf_prefix).
    wrong = JointTrajectory(joint_names=["shoulder_pan_joint", *late.joint_names[1:]])
    wrong.points = [point]
    pub.publish(wrong)
    assert sd.wait(lambda: len(driver.record.rejected) == 2, 5.0), driver.record.rejected
    assert "Incoming joint shoulder_pan_joint doesn't match" in driver.record.rejected[1][1]


def test_driver_fr3(ros):
    spin, runners = ros
    emb = load_embodiment("fr3", kinematics=False)
    harness = spin.add(Harness())
    driver = spin.add(sd.Fr3StandIn())
    start_bringup("fr3", runners)
    # The state is built from franka/joint_states + franka_gripper/joint_states together.
    assert sd.wait(lambda: driver_text(harness) == "ready", 30.0), harness.diagnostics
    drive_to_pose(harness, driver, emb, _arm_offsets(0.01))
    assert driver.record.rejected == []
    last = driver.record.last["left/fr3_arm_controller"]
    assert "fr3_finger_joint1" not in last.joint_names and len(last.points) > 1
    goal = driver.record.last["left/franka_gripper"]
    assert goal.command.position == pytest.approx(0.03, abs=1e-3)  # one finger's travel, m
    assert goal.command.max_effort == 20.0
    with driver.lock:
        arm = driver.arms["left"]
        assert arm.get("fr3_finger_joint2") == pytest.approx(arm.get("fr3_finger_joint1"))
    # No more chunks: within chunk_timeout the executor holds; the held trajectory stands still.
    time.sleep(0.8)
    held = driver.record.last["left/fr3_arm_controller"]
    assert len(held.points) == 1 and harness.diagnostics.get("holding") == "True"
    # E-stop: every command stops at once and ~/enable is refused until it is released.
    from std_msgs.msg import Bool

    estop = harness.create_publisher(Bool, "/estop", 10)
    assert sd.wait(lambda: estop.get_subscription_count() > 0, 5.0)
    estop.publish(Bool(data=True))
    assert sd.wait(lambda: harness.diagnostics.get("estopped") == "True", 5.0)
    count = driver.record.accepted["left/fr3_arm_controller"]
    time.sleep(0.3)
    assert driver.record.accepted["left/fr3_arm_controller"] == count
    reply = harness.enable()
    assert not reply.success and "e-stop is latched" in reply.message
