"""Record scripted-expert demonstrations in the sim as rosbags, one bag per episode.

Starts the `sim` bringup with the scripted expert driving the arms and the recorder in
auto-episode mode (`policy:=false expert:=true recorder:=true`): exactly the nodes and topics a
teleoperated demonstration on the real robot goes through. Then, as an ordinary ROS client, it
resets the sim with one seed per episode and waits for the episode to end; the recorder opens a
bag when an episode starts and closes it after success or when the next one starts.

    python -m action_diffusion_bringup.collect --task transfer_cube --episodes 50 \
        --seed 0 --bag-dir data/bags/transfer_cube
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

from action_diffusion_bringup import description
from action_diffusion_bringup.demo import DemoClient, run_episode, wait_until
from action_diffusion_bringup.description import BringupError, NodeSpec
from action_diffusion_bringup.run import BringupRunner, claim_private_domain

EPISODE_STEPS = {"transfer_cube": 400, "insertion": 450}


def with_parameters(specs: list[NodeSpec], node: str, **params) -> list[NodeSpec]:
    """The specs with extra inline parameters for one node (they win over its YAML files)."""
    out = []
    for spec in specs:
        if spec.name == node:
            kept = tuple((k, v) for k, v in spec.parameters if k not in params)
            spec = dataclasses.replace(spec, parameters=kept + tuple(params.items()))
        out.append(spec)
    return out


def sim_overrides(cameras: list[str], real_time_factor: float, steps: int) -> dict:
    """Sim parameters for a run: which cameras render, how fast, how long an episode is."""
    return {
        # An empty list cannot be typed as a string array in a ROS parameter: no camera is
        # rendered when the rate is 0.
        "cameras": cameras or ["cam_high"],
        "camera_rate": 25.0 if cameras else 0.0,
        "real_time_factor": float(real_time_factor),
        "episode_length": int(steps),
    }


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


def call_trigger(client, node, timeout: float = 10.0) -> str:
    from std_srvs.srv import Trigger

    future = client.call_async(Trigger.Request())
    deadline = time.monotonic() + timeout
    while not future.done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{client.srv_name} did not answer within {timeout:.0f} s")
        time.sleep(0.01)
    return future.result().message


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
    import rclpy
    from std_srvs.srv import Trigger
    from tqdm import tqdm

    successes = 0
    with open(log_path, "w") as log, BringupRunner(specs, output=log, stop_timeout=10.0) as runner:
        rclpy.init()
        client = DemoClient(policy=False)
        stop_client = client.node.create_client(Trigger, "/recorder/stop")
        try:
            wait_until(
                lambda: client.ready() and stop_client.service_is_ready(),
                180.0,
                runner,
                "the nodes to be ready",
            )
            bar = tqdm(range(options.episodes), desc="episodes", unit="ep")
            for episode in bar:
                result = run_episode(
                    client,
                    runner,
                    episode + 1,
                    options.seed + episode,
                    steps,
                    options.episode_timeout,
                )
                successes += result.success
                bar.set_postfix(success=f"{successes}/{episode + 1}")
            # Let the recorder see the last success and close the last bag itself.
            time.sleep(1.0)
            call_trigger(stop_client, client.node)
        except (RuntimeError, TimeoutError) as error:
            print(f"[collect] error: {error}; node output in {log_path}", file=sys.stderr)
            return 1
        finally:
            client.close()
            rclpy.try_shutdown()
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
