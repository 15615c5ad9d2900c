"""Crash drill for the recorder: kill it mid-episode, repair the bag, build a dataset.

    python -m action_diffusion_bringup.recording_drill [--task transfer_cube] [--kill-after 5]
        [--work DIR] [--out results/benchmarks/recording_drill.json]

Brings up the sim with the scripted expert and the recorder (``sim`` bringup, ``recorder:=true``,
real DDS), SIGKILLs the recorder ``--kill-after`` sim seconds into the first episode, then runs
``build_dataset --repair`` on the bag directory. Reports the recorded span (sim time at the kill
minus the bag's first message), what the repair recovered, and how much of the span the dataset
kept. Prints JSON (and writes it to ``--out`` with the commit and the command).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path

from action_diffusion_bringup import description as d
from action_diffusion_bringup.evaluate import git_commit
from action_diffusion_bringup.report import write_atomic
from action_diffusion_bringup.run import BringupRunner, claim_private_domain


def kill_recorder_mid_episode(
    work: Path, task: str = "transfer_cube", kill_after_s: float = 5.0, timeout_s: float = 180.0
) -> dict:
    """Run the drill in ``work`` (bags under ``work/bags``, dataset ``work/ds``); returns the
    report. Raises RuntimeError when the episode never got ``kill_after_s`` in."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock

    from action_diffusion_msgs.msg import EpisodeStatus
    from action_diffusion_policy.data.bags import read_episode_record
    from action_diffusion_policy.data.build_dataset import build_dataset

    bag_dir = work / "bags"
    specs = d.describe("sim", d.parse_launch_args(
        ["policy:=false", "expert:=true", "recorder:=true", f"task:={task}",
         f"bag_dir:={bag_dir}"]))  # fmt: skip
    period = 1.0 / 50.0  # the sim's control period: EpisodeStatus.step counts these
    rclpy.init()
    node = rclpy.create_node("recording_drill")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    clock, status = [0], []
    node.create_subscription(Clock, "/clock", lambda m: clock.__setitem__(
        0, m.clock.sec * 1_000_000_000 + m.clock.nanosec), 10)  # fmt: skip
    node.create_subscription(EpisodeStatus, "/sim/episode_status", status.append, 10)
    log = open(work / "nodes.log", "w")  # noqa: SIM115 (closed after the runner stops)
    runner = BringupRunner(specs, output=log, stop_timeout=5.0)

    def far_enough():
        bags = list(bag_dir.glob("episode_*")) if bag_dir.is_dir() else []
        return bool(bags) and bool(status) and status[-1].step * period >= kill_after_s

    try:
        runner.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not far_enough() and not runner.exited():
            executor.spin_once(timeout_sec=0.05)
        if not far_enough():
            raise RuntimeError(
                f"the episode did not reach {kill_after_s} s within {timeout_s} s "
                f"(exited nodes: {runner.exited()}; node log {work / 'nodes.log'})"
            )
        killed_at_ns, killed_step = clock[0], status[-1].step
        os.kill(runner.pids["recorder"], signal.SIGKILL)
    finally:
        runner.stop()
        log.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()

    [bag] = [p for p in bag_dir.iterdir() if p.name.startswith("episode_")]
    early = read_episode_record(bag)
    t0 = time.monotonic()
    dataset = build_dataset(bags=[bag_dir], output=work / "ds", image_size=(24, 32), repair=True,
                            env_state=False, progress=False)  # fmt: skip
    repair_and_build_s = time.monotonic() - t0
    repaired = read_episode_record(bag.with_name(bag.name + ".repaired"))["repaired"]
    recorded_span_s = killed_at_ns / 1e9 - repaired["start_s"]
    kept_s = dataset["frames"] / dataset["control_frequency"]
    return {
        "task": task,
        "killed_at_episode_step": killed_step,
        "unrepaired_bag": {
            "metadata_yaml": (bag / "metadata.yaml").exists(),
            "episode_json_closed": early.get("closed"),
            "episode_json_topics": len(early.get("topics", {})),
        },
        "recorded_span_s": round(recorded_span_s, 3),
        "repaired_span_s": repaired["span_s"],
        "lost_at_the_end_s": round(recorded_span_s - repaired["span_s"], 3),
        "dataset_span_s": round(kept_s, 3),
        "dataset_fraction_of_recorded_span": round(kept_s / recorded_span_s, 3),
        "repair": repaired,
        "repair_and_build_s": round(repair_and_build_s, 2),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="recording_drill", description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="transfer_cube", choices=d.TASKS)
    ap.add_argument("--kill-after", type=float, default=5.0, help="sim seconds into the episode")
    ap.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    ap.add_argument("--out", type=Path, help="JSON file to write")
    a = ap.parse_args(argv)
    claim_private_domain()
    work = a.work or Path(tempfile.mkdtemp(prefix="recording_drill_"))
    work.mkdir(parents=True, exist_ok=True)
    report = kill_recorder_mid_episode(work, a.task, a.kill_after)
    report["commit"] = git_commit()
    report["command"] = "python -m action_diffusion_bringup.recording_drill " + " ".join(
        shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    text = json.dumps(report, indent=1) + "\n"
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(a.out, text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
