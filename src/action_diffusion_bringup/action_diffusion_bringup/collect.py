"""Record scripted-expert demonstrations in the sim as rosbags, one bag per episode.

Starts the `sim` bringup with the scripted expert driving the arms and the recorder in
auto-episode mode (`policy:=false expert:=true recorder:=true`): exactly the nodes and topics a
teleoperated demonstration on the real robot goes through. Then, through the sim episode client
(`sim_client.SimClient`), it resets the sim with one seed per episode and waits for the episode
to end; the recorder opens a bag when an episode starts and closes it after success or when the
next one starts.

    python -m action_diffusion_bringup.collect --task transfer_cube --episodes 50 \
        --seed 0 --bag-dir data/bags/transfer_cube
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from action_diffusion_bringup import description
from action_diffusion_bringup.description import BringupError
from action_diffusion_bringup.run import BringupRunner, claim_private_domain
from action_diffusion_bringup.sim_client import (
    EPISODE_STEPS,
    SimClient,
    sim_overrides,
    with_parameters,
)


def recorder_topics(cameras: list[str]) -> dict:
    """Recorder parameters that record exactly ``cameras`` (none: no image topic at all, so
    the dataset builder does not meet camera topics that never carried a message)."""
    from action_diffusion_policy.data import embodiment_adapter as ea
    from unified_action_space import load_embodiment

    embodiment = load_embodiment(description.SIM_EMBODIMENT, kinematics=False)
    if cameras:
        return {"camera_topics": [embodiment.camera(c).topic for c in cameras]}
    defaults = ea.record_topics(embodiment, False, ea.UNIFIED_STATE_TOPIC)
    return {
        "topics": [
            f"{topic}:{msgtype}"
            for topic, msgtype in defaults.items()
            if msgtype not in (ea.IMAGE_TYPE, ea.COMPRESSED_TYPE)
        ]
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="collect", description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=description.TASKS, default="transfer_cube")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    parser.add_argument("--bag-dir", type=Path, required=True)
    parser.add_argument(
        "--cameras", default="cam_high", help="comma-separated sim cameras to record ('' = none)"
    )
    parser.add_argument(
        "--real-time-factor",
        type=float,
        default=1.0,
        help="sim seconds per wall second at most (the expert runs on sim time)",
    )
    parser.add_argument("--force", action="store_true", help="empty a non-empty --bag-dir first")
    parser.add_argument("--episode-timeout", type=float, default=300.0)
    options = parser.parse_args(argv)
    if options.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {options.episodes}")
    return options


def main(argv=None) -> int:
    options = parse_args(argv)
    bag_dir = options.bag_dir.resolve()
    if bag_dir.exists() and any(bag_dir.iterdir()):
        if not options.force:
            print(
                f"[collect] error: {bag_dir} is not empty; pass --force to replace its bags",
                file=sys.stderr,
            )
            return 2
        shutil.rmtree(bag_dir)
    bag_dir.mkdir(parents=True, exist_ok=True)
    cameras = [c for c in options.cameras.split(",") if c]
    steps = EPISODE_STEPS[options.task]
    try:
        specs = description.describe(
            "sim",
            {
                "task": options.task,
                "policy": "false",
                "expert": "true",
                "recorder": "true",
                "bag_dir": str(bag_dir),
            },
        )
        domain = claim_private_domain()
    except BringupError as error:
        print(f"[collect] error: {error}", file=sys.stderr)
        return 2
    specs = with_parameters(specs, "sim", **sim_overrides(cameras, options.real_time_factor, steps))
    specs = with_parameters(specs, "recorder", **recorder_topics(cameras))
    log_path = bag_dir / "collect_nodes.log"
    print(
        f"[collect] {options.episodes} scripted-expert episode(s) of {options.task} from seed "
        f"{options.seed} into {bag_dir} (cameras: {', '.join(cameras) or 'none'}), "
        f"ROS domain {domain}"
    )
    from std_srvs.srv import Trigger
    from tqdm import tqdm

    successes = 0
    with (
        open(log_path, "w") as log,
        BringupRunner(specs, output=log, stop_timeout=10.0) as runner,
        SimClient(runner, policy=False, node_name="collect") as client,
    ):
        stop_client = client.node.create_client(Trigger, "/recorder/stop")
        try:
            client.wait_until(
                lambda: client.ready() and stop_client.service_is_ready(),
                180.0,
                "the nodes to be ready",
            )
            bar = tqdm(range(options.episodes), desc="episodes", unit="ep")
            for episode in bar:
                result = client.run_episode(
                    episode + 1, options.seed + episode, steps, options.episode_timeout
                )
                successes += result.success
                bar.set_postfix(success=f"{successes}/{episode + 1}")
            # Let the recorder see the last success and close the last bag itself.
            time.sleep(1.0)
            client.call(stop_client, Trigger.Request(), 10.0, check=False)
        except (RuntimeError, TimeoutError) as error:
            print(f"[collect] error: {error}; node output in {log_path}", file=sys.stderr)
            return 1
    bags = sorted(p for p in bag_dir.iterdir() if p.is_dir())
    print(
        f"[collect] {len(bags)} bag(s) in {bag_dir}; expert success {successes}/{options.episodes}"
    )
    if len(bags) < options.episodes:
        print(
            f"[collect] error: expected {options.episodes} bags, found {len(bags)}; see {log_path}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
