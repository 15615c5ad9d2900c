"""The launch-free runner, for real: node processes, DDS traffic, signals, clean shutdown."""

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from action_diffusion_bringup import description as d
from action_diffusion_bringup import run

PID_LINE = re.compile(r"\[run\] started (\S+) \(pid (\d+)\)")


def alive(pid):
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- before anything starts ---------------------------------------------------------------------


def test_bad_arguments_fail_before_any_node_starts(capsys):
    assert run.main(["real", "robot:=baxter"]) == 2
    error = capsys.readouterr().err
    assert "unknown robot 'baxter'" in error and "piper" in error and "fr3" in error
    assert run.main(["sim"]) == 2
    assert "checkpoint:=DIR is required" in capsys.readouterr().err
    assert run.main(["sim", "policy:=false", "expert"]) == 2
    assert "name:=value" in capsys.readouterr().err


def test_show_args_and_dry_run(capsys):
    assert run.main(["record", "--show-args"]) == 0
    shown = capsys.readouterr().out
    for arg in d.arguments("record"):
        assert arg.name in shown and arg.description in shown
    assert run.main(["sim", "policy:=false", "expert:=true", "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    specs = d.describe("sim", {"policy": "false", "expert": "true"})
    assert lines == [" ".join(d.node_command(s, run.executable_path(s))) for s in specs]


# --- real processes -----------------------------------------------------------------------------


@pytest.mark.ros
def test_a_failing_required_node_stops_the_others_and_fails_the_run(tmp_path):
    good = d.describe("record", {"robot": "aloha", "bag_dir": str(tmp_path)})[1]
    bad = dataclasses.replace(
        good, name="bad_recorder", parameters=(*good.parameters, ("storage", "tape"))
    )
    lines = []

    class Collect:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    runner = run.BringupRunner([good, bad], stop_timeout=5.0, output=Collect())
    runner.start()
    pids = runner.pids
    code = runner.wait(timeout=60.0)
    output = "".join(lines)
    assert code == 1, output
    assert len(runner.failures) == 1 and runner.failures[0].startswith("bad_recorder exited")
    assert runner.failures[0] != "bad_recorder exited with code 0"
    assert "[bad_recorder] " in output and "storage='tape'" in output  # its own error, prefixed
    assert not any(alive(pid) for pid in pids.values())


def spin_until(executor, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        executor.spin_once(timeout_sec=0.05)
    return predicate()


@pytest.mark.ros
def test_runner_brings_up_the_sim_with_the_expert_and_stops_cleanly():
    rclpy = pytest.importorskip("rclpy")
    from rcl_interfaces.srv import GetParameters
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64MultiArray

    from action_diffusion_msgs.msg import EpisodeStatus, UnifiedState

    given = ["policy:=false", "expert:=true", "task:=transfer_cube"]
    process = subprocess.Popen(
        [sys.executable, "-m", "action_diffusion_bringup.run", "sim", *given],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()

    rclpy.init()
    node = rclpy.create_node("bringup_probe")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    topics = {
        "/clock": Clock,
        "/follower_left/joint_states": JointState,
        "/follower_right/joint_states": JointState,
        "/follower_left/commands/joint_positions": Float64MultiArray,
        "/follower_right/commands/joint_positions": Float64MultiArray,
        "/unified_state": UnifiedState,
        "/sim/episode_status": EpisodeStatus,
        "/cameras/cam_high/image_raw": Image,
    }
    received = {topic: [] for topic in topics}
    for topic, msg_type in topics.items():
        node.create_subscription(
            msg_type, topic, lambda msg, t=topic: received[t].append(msg), qos_profile_sensor_data
        )
    try:
        flowing = spin_until(executor, lambda: all(len(v) >= 3 for v in received.values()), 120)
        assert flowing, (
            {t: len(v) for t, v in received.items()},
            "".join(output[-40:]),
        )
        assert received["/unified_state"][-1].embodiment == d.SIM_EMBODIMENT
        # Node names reach the graph by discovery, which can lag the first messages.
        def names():
            return {name for name, _ns in node.get_node_names_and_namespaces()}

        expected = {"sim", "unified_state", "scripted_expert"}
        assert spin_until(executor, lambda: expected <= names(), 10.0), names()

        # Parameters reached the nodes: the inline ones and those of the YAML files.
        spec = d.describe("sim", d.parse_launch_args(given))[0]
        expected = dict(spec.parameters)
        for path in d.parameter_file_paths(spec):
            expected.update(yaml.safe_load(path.read_text())[spec.name]["ros__parameters"])
        client = node.create_client(GetParameters, f"/{spec.name}/get_parameters")
        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(GetParameters.Request(names=list(expected)))
        assert spin_until(executor, future.done, 10.0)
        from rclpy.parameter import parameter_value_to_python

        got = dict(zip(expected, map(parameter_value_to_python, future.result().values)))
        assert got == expected
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
        reader.join(timeout=5)
    text = "".join(output)
    pids = [int(pid) for _name, pid in PID_LINE.findall(text)]
    assert len(pids) == 3, text
    assert code == 0, text[-3000:]
    assert not any(alive(pid) for pid in pids), text[-3000:]


@pytest.mark.ros
def test_record_bringup_for_piper_listens_on_its_drivers_topics(tmp_path):
    """Per-arm driver namespaces (embodiment) and camera remaps (cameras_piper.yaml), for real."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CompressedImage, JointState

    from action_diffusion_msgs.msg import UnifiedState

    specs = d.describe("record", {"robot": "piper", "bag_dir": str(tmp_path)})
    camera_topic = d.camera_topics("piper")["cam_high"] + "/compressed"
    rclpy.init()
    node = rclpy.create_node("piper_drivers_standin")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    arms = {arm: node.create_publisher(JointState, f"/piper_{arm}/joint_states_single", 10)
            for arm in ("left", "right")}  # fmt: skip
    camera = node.create_publisher(CompressedImage, camera_topic, 10)
    states = []
    node.create_subscription(UnifiedState, "/unified_state", states.append, 10)
    runner = run.BringupRunner(specs, stop_timeout=5.0)

    def publish():
        stamp = node.get_clock().now().to_msg()
        for publisher in arms.values():
            # What agilexrobotics/Piper_ros publishes: joint1..joint6 and gripper, with
            # velocities for the six joints only.
            msg = JointState(name=[*(f"joint{i}" for i in range(1, 7)), "gripper"])
            msg.header.stamp = stamp
            msg.position = [0.0, 1.0, -1.0, 0.0, 0.0, 0.0, 0.03]
            msg.velocity = [0.1] * 6
            publisher.publish(msg)
        camera.publish(CompressedImage(format="jpeg"))

    def recorder_listens():
        return any(
            info.node_name == "recorder"
            for info in node.get_subscriptions_info_by_topic(camera_topic)
        )

    try:
        runner.start()
        timer = node.create_timer(0.02, publish)
        assert spin_until(executor, lambda: states and recorder_listens(), 60.0), runner.exited()
        assert states[-1].embodiment == "piper"
        assert runner.exited() == {}
        node.destroy_timer(timer)
    finally:
        runner.stop()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()
    assert not any(alive(pid) for pid in runner.pids.values())


@pytest.mark.ros
def test_sigterm_is_forwarded_and_nothing_is_left_behind(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "action_diffusion_bringup.run", "record", f"bag_dir:={tmp_path}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("recorder ready" in line for line in output):
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=30)
    reader.join(timeout=5)
    text = "".join(output)
    pids = [int(pid) for _name, pid in PID_LINE.findall(text)]
    assert "recorder ready" in text, text
    assert len(pids) == 2 and code == 0, text
    assert not any(alive(pid) for pid in pids)


# --- private ROS domains for the sim runners ------------------------------------------------------


def test_claim_private_domain_respects_the_users_choice():
    env = {"ROS_DOMAIN_ID": "7"}
    assert run.claim_private_domain(env) == "7"
    assert env == {"ROS_DOMAIN_ID": "7"}  # discovery range untouched too


def test_concurrent_runs_get_different_private_domains():
    first, second = {}, {}
    a = run.claim_private_domain(first)
    b = run.claim_private_domain(second)
    assert a != b
    assert int(a) in run.PRIVATE_DOMAINS and int(b) in run.PRIVATE_DOMAINS
    assert first["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    # Another process sees both domains taken while this one holds them.
    # Another process can claim every other free domain, never these two, and then gets a
    # clear error (other sim runs on the machine may hold some domains too).
    probe = (
        "import sys\n"
        "from action_diffusion_bringup import run\n"
        "got = set()\n"
        "try:\n"
        "    while True:\n"
        "        got.add(run.claim_private_domain({}))\n"
        "except run.BringupError as error:\n"
        "    print(error)\n"
        "assert not (got & set(sys.argv[1:])), got\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, a, b], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "set ROS_DOMAIN_ID" in out.stdout
