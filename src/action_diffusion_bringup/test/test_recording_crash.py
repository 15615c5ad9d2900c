"""A recorder SIGKILLed mid-episode, for real: the sim with the scripted expert, the recorder
over DDS, then repair and build_dataset keep at least 90 % of the recorded span."""

import json
import os
import signal
import time

import pytest

from action_diffusion_bringup import description as d
from action_diffusion_bringup import run

KILL_AFTER_S = 5.0  # sim seconds into the episode: well before the expert finishes


@pytest.mark.ros
def test_killed_recorder_loses_at_most_its_last_chunk(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock

    from action_diffusion_msgs.msg import EpisodeStatus
    from action_diffusion_policy.data.bags import read_episode_record
    from action_diffusion_policy.data.build_dataset import build_dataset

    bag_dir = tmp_path / "bags"
    specs = d.describe("sim", d.parse_launch_args(
        ["policy:=false", "expert:=true", "recorder:=true", "task:=transfer_cube",
         f"bag_dir:={bag_dir}"]))  # fmt: skip
    rclpy.init()
    node = rclpy.create_node("crash_probe")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    clock, status = [0], []
    node.create_subscription(Clock, "/clock", lambda m: clock.__setitem__(
        0, m.clock.sec * 1_000_000_000 + m.clock.nanosec), 10)  # fmt: skip
    node.create_subscription(EpisodeStatus, "/sim/episode_status", status.append, 10)
    runner = run.BringupRunner(specs, stop_timeout=5.0)

    def recording():  # the recorder opened a bag, and the episode is KILL_AFTER_S in
        bags = list(bag_dir.glob("episode_*")) if bag_dir.is_dir() else []
        return bags and status and status[-1].step * 0.02 >= KILL_AFTER_S

    try:
        runner.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not recording() and not runner.exited():
            executor.spin_once(timeout_sec=0.05)
        assert recording(), (runner.exited(), [s.step for s in status[-3:]])
        killed_at_ns = clock[0]
        os.kill(runner.pids["recorder"], signal.SIGKILL)
        killed_step = status[-1].step
    finally:
        runner.stop()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()

    [bag] = [p for p in bag_dir.iterdir() if p.name.startswith("episode_")]
    assert not (bag / "metadata.yaml").exists()
    early = read_episode_record(bag)
    assert early["closed"] is False and "/cameras/cam_high/image_raw" in early["topics"]

    out = tmp_path / "ds"
    report = build_dataset(bags=[bag_dir], output=out, image_size=(24, 32), repair=True,
                           env_state=False, progress=False)
    repaired = read_episode_record(bag.with_name(bag.name + ".repaired"))["repaired"]
    recorded_span_s = killed_at_ns / 1e9 - repaired["start_s"]
    kept_s = report["frames"] / report["control_frequency"]
    print(json.dumps({"killed_at_step": killed_step, "recorded_span_s": recorded_span_s,
                      "dataset_span_s": kept_s, "repair": repaired}))  # fmt: skip
    assert recorded_span_s > KILL_AFTER_S - 1.0
    assert kept_s >= 0.9 * recorded_span_s, (kept_s, recorded_span_s, repaired)
