"""Record the committed sample bag: a few seconds of the simulated transfer-cube task, made by
the real nodes over DDS (sim_node, scripted_expert_node, unified_state_node, recorder_node).

    python -m action_diffusion_policy.testing.make_sample_bag OUT_DIR [--seconds 4]
        [--size 48 64] [--cameras cam_high cam_left_wrist] [--seed 0] [--task transfer_cube]

Small images keep the bag small (the committed one must stay under 3 MB). Every node but the
sim runs on the sim's /clock, so bag times are simulated time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _ros_args(params: dict) -> list[str]:
    out = ["--ros-args"]
    for k, v in params.items():
        if isinstance(v, bool):
            v = str(v).lower()
        elif isinstance(v, list):
            v = "[" + ",".join(f"'{x}'" for x in v) + "]"
        out += ["-p", f"{k}:={v}"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="bag directory to create")
    ap.add_argument("--seconds", type=float, default=4.0, help="sim seconds to record")
    ap.add_argument("--size", nargs=2, type=int, default=(48, 64), metavar=("H", "W"))
    ap.add_argument("--cameras", nargs="+", default=["cam_high", "cam_left_wrist"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--task", default="transfer_cube")
    ap.add_argument("--instruction", default="pick up the cube and hand it to the other arm")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if out.exists():
        print(f"{out} exists; remove it first", file=sys.stderr)
        return 2
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("MUJOCO_GL", "egl")
    work = Path(tempfile.mkdtemp(prefix="sample_bag_"))
    py = sys.executable
    cam_topics = [f"/cameras/{c}/image_raw" for c in a.cameras]
    procs = [
        subprocess.Popen([py, "-m", "aloha_sim.nodes.sim_node", *_ros_args({
            "task": a.task, "seed": a.seed, "render_height": a.size[0],
            "render_width": a.size[1], "cameras": a.cameras, "real_time_factor": 1.0,
            "episode_length": 0})]),
        subprocess.Popen([py, "-m", "aloha_sim.nodes.scripted_expert_node",
                          *_ros_args({"use_sim_time": True})]),
        subprocess.Popen([py, "-m", "unified_action_space.nodes.unified_state_node",
                          *_ros_args({"embodiment": "aloha_sim", "use_sim_time": True})]),
        subprocess.Popen([py, "-m", "action_diffusion_policy.nodes.recorder_node", *_ros_args({
            "embodiment": "aloha_sim", "use_sim_time": True, "output_dir": str(work),
            "camera_topics": cam_topics, "storage": "mcap"})]),
    ]
    import rclpy
    from rosgraph_msgs.msg import Clock
    from std_srvs.srv import SetBool, Trigger

    from action_diffusion_msgs.msg import EpisodeStatus
    from action_diffusion_msgs.srv import ResetEpisode, StartRecording

    rclpy.init()
    node = rclpy.create_node("make_sample_bag")
    latest = {"clock": 0, "success": False}
    node.create_subscription(Clock, "/clock", lambda m: latest.__setitem__(
        "clock", m.clock.sec * 10**9 + m.clock.nanosec), 10)
    node.create_subscription(EpisodeStatus, "/sim/episode_status",
                             lambda m: latest.__setitem__("success", m.success), 10)

    def call(srv, name, req):
        cli = node.create_client(srv, name)
        if not cli.wait_for_service(timeout_sec=60):
            raise RuntimeError(f"{name} not available")
        fut = cli.call_async(req)
        rclpy.spin_until_future_complete(node, fut, timeout_sec=60)
        return fut.result()

    try:
        # Wait for the recorder to subscribe to everything the sim, expert and state node publish.
        deadline = time.monotonic() + 120
        wanted = [*cam_topics, "/follower_left/joint_states", "/follower_right/joint_states",
                  "/follower_left/commands/joint_positions",
                  "/follower_right/commands/joint_positions", "/unified_state",
                  "/sim/episode_status"]
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
            if all(node.count_publishers(t) > 0 and node.count_subscribers(t) > 0
                   for t in wanted):
                break
        else:
            raise RuntimeError("nodes did not come up: " + ", ".join(
                t for t in wanted if not node.count_publishers(t)))
        time.sleep(1.0)
        reset = call(ResetEpisode, "/sim/reset", ResetEpisode.Request(seed=a.seed, use_seed=True))
        start = call(StartRecording, "/recorder/start", StartRecording.Request(
            task=a.task, instruction=a.instruction, notes=f"seed={reset.seed}; sample bag"))
        if not start.success:
            raise RuntimeError(start.message)
        rclpy.spin_once(node, timeout_sec=0.1)
        t0 = latest["clock"]
        while latest["clock"] - t0 < a.seconds * 1e9:
            rclpy.spin_once(node, timeout_sec=0.1)
        stop = call(Trigger, "/recorder/stop", Trigger.Request())
        call(SetBool, "/recorder/mark_success", SetBool.Request(data=bool(latest["success"])))
        info = json.loads(stop.message)
        shutil.move(info["bag_path"], out)
        print(json.dumps({**info, "bag_path": str(out)}, indent=1))
        return 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        node.destroy_node()
        rclpy.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
