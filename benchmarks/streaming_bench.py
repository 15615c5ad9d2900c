"""Streamed vs one-point JointTrajectory commands: what rate does the arm's controller get?

The UR5e real bringup's nodes (unified_state_node + action_executor, real.yaml) run against
the test-only ros2_control stand-in (action_diffusion_bringup/testing/standin_drivers.py),
whose joint trajectory controller samples the newest accepted trajectory in its own loop
(250 Hz nominal; a Python timer). Two runs, the shipped ur5e.yaml with ``stream: true`` and a
copy with ``stream: false`` (passed as embodiment:=PATH); in each, chunks ask for a 3 rad
move of every arm joint, and mid-motion the executor process is stopped (SIGSTOP) for
``--stall`` seconds: no Python tick at all. Printed as JSON:

- ``executor_messages_per_s``: trajectories the controller accepted per second of motion;
- ``controller_setpoint_updates_per_s``: controller cycles per second whose setpoint moved;
- ``stall``: the same while the executor is stopped, and the fraction of cycles that moved.

    python benchmarks/streaming_bench.py [--stall 0.15] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

MOVE_RAD = 3.0  # long enough that the arms are still moving when the executor stops


def measure(stream: bool, stall_s: float) -> dict:
    import rclpy

    from action_diffusion_bringup import description as d
    from action_diffusion_bringup import run
    from action_diffusion_bringup.testing import standin_drivers as sd
    from unified_action_space import load_embodiment
    from unified_action_space.embodiment import resolve_embodiment_path

    data = yaml.safe_load(Path(resolve_embodiment_path("ur5e")).read_text())
    for arm in data["arms"].values():
        arm["command_outputs"][0]["stream"] = stream
    tmp = Path(tempfile.mkdtemp()) / f"ur5e_stream_{stream}.yaml"
    tmp.write_text(yaml.safe_dump(data))
    emb = load_embodiment(tmp, kinematics=False)
    checkpoint = d.checkpoints_dir() / "transfer_cube_camera"
    args = {"robot": "ur5e", "embodiment": str(tmp), "checkpoint": str(checkpoint)}
    specs = [s for s in d.describe("real", args) if s.name != "policy"]
    rclpy.init()
    spin = sd.Spinning()
    devnull = open(os.devnull, "w")  # noqa: SIM115 (the nodes write into it until stopped)
    runner = run.BringupRunner(specs, stop_timeout=5.0, output=devnull)
    try:
        harness = spin.add(sd.Harness())
        driver = spin.add(sd.Ros2ControlStandIn("ur_standin", sd.ur_robots()))
        runner.start()
        if not sd.wait(lambda: harness.diagnostics.get("driver") == "ready", 60.0):
            raise RuntimeError(f"the executor never saw the driver ready: {harness.diagnostics}")
        rows = {}
        with driver.lock:
            for arm in emb.arms:
                servo = driver.arms[arm.joint_state_topic.split("/")[1]]
                home = np.array([servo.get(n) for n in arm.command_joint_names])
                lim = arm.command_position_limits
                rows[arm.name] = np.clip(home + MOVE_RAD, lim[:, 0], lim[:, 1])
        target = emb.actions_from_commands(rows)[emb.action_slots]
        if not harness.enable().success:
            raise RuntimeError("~/enable refused")
        key = "right/scaled_joint_trajectory_controller"

        def counts():
            with driver.lock:
                return (time.monotonic(), driver.record.accepted.get(key, 0),
                        driver.setpoint_changes, driver.control_cycles)  # fmt: skip

        def stream_chunks(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                harness.send_pose(emb, target)
                time.sleep(0.05)

        stream_chunks(0.5)  # the start ramp's first part
        t0, m0, s0, c0 = counts()
        stream_chunks(0.6)
        t1, m1, s1, c1 = counts()
        pid = runner.pids["action_executor"]
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(stall_s)
        finally:
            t2, m2, s2, c2 = counts()
            os.kill(pid, signal.SIGCONT)
        last = driver.record.last.get(key)
        return {
            "stream": stream,
            "points_per_trajectory": len(last.points) if last else 0,
            "trajectory_span_s": round(
                last.points[-1].time_from_start.sec + last.points[-1].time_from_start.nanosec
                * 1e-9, 3) if last else 0.0,
            "chunk_horizon_s": round(64 / emb.control_frequency, 3),
            "executor_messages_per_s": round((m1 - m0) / (t1 - t0), 1),
            "controller_cycles_per_s": round((c1 - c0) / (t1 - t0), 1),
            "controller_setpoint_updates_per_s": round((s1 - s0) / (t1 - t0), 1),
            "stall": {
                "seconds": round(t2 - t1, 3),
                "executor_messages": m2 - m1,
                "controller_cycles": c2 - c1,
                "setpoint_updates": s2 - s1,
                "fraction_of_cycles_moving": round((s2 - s1) / max(1, c2 - c1), 3),
            },
            "rejected": len(driver.record.rejected),
        }
    finally:
        runner.stop()
        spin.close()
        rclpy.shutdown()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stall", type=float, default=0.15, help="s the executor is stopped")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--one", choices=["stream", "single"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # one configuration per process: a fresh rclpy context and DDS participant
        print(json.dumps(measure(args.one == "stream", args.stall)), flush=True)
        os._exit(0)  # rclpy's threads may still be winding down; the figures are out
    runs = []
    for one in ("stream", "single"):
        out = subprocess.run([sys.executable, __file__, "--one", one, "--stall", str(args.stall)],
                             check=True, capture_output=True, text=True)  # fmt: skip
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    result = {
        "commit": commit,
        "command": "python benchmarks/streaming_bench.py" + " ".join(
            [""] + (argv if argv is not None else sys.argv[1:])),
        "cpu_count": os.cpu_count(),
        "runs": runs,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
