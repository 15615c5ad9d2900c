"""`make demo`: the transfer-cube task in the simulated ALOHA, closed loop through the ROS nodes.

Starts the `sim` bringup with the runner (the same nodes `sim.launch.py` starts), then, as an
ordinary ROS client, resets the sim with a seed per episode (`/sim/reset`), follows
`/sim/episode_status` until success or the episode's end, prints the success rate and writes a
video of the first episode from the top camera (`cam_high`, its topic from the aloha_sim
embodiment's cameras) under artifacts/.

What drives the arms: the policy node + action executor when a trained checkpoint exists
(DEFAULT_CHECKPOINT, or DEMO_CHECKPOINT / --checkpoint); until then the scripted expert node,
which commands the follower arms on the same topics. The demo prints which one it is.

Environment: DEMO_EPISODES (default 5), DEMO_SEED (first seed, default 1000), DEMO_CHECKPOINT
(a checkpoint directory, or "none" to force the scripted expert).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from action_diffusion_bringup import description
from action_diffusion_bringup.chunk_plot import ChunkRecord, plot_chunks_vs_commands
from action_diffusion_bringup.description import BringupError
from action_diffusion_bringup.report import write_atomic
from action_diffusion_bringup.run import BringupRunner, claim_private_domain

# Paths a user sees are shown relative to where make/demo runs (the workspace root).
REPO_ROOT = Path.cwd()
# The checkpoint the demo runs once the end-to-end pipeline ships one (switching is this line).
DEFAULT_CHECKPOINT = description.checkpoints_dir() / "transfer_cube"
ARTIFACTS = Path("artifacts")  # under the working directory, as the README says
TASK = "transfer_cube"
VIDEO_CAMERA = "cam_high"  # the camera the video shows
STATUS_TOPIC = "/sim/episode_status"
RESET_SERVICE = "/sim/reset"
POLICY_RESET_SERVICE = "/policy/reset_episode"
EXECUTOR_RESET_SERVICE = "/action_executor/reset"
POLICY_STATE_SERVICE = "/policy/get_state"  # lifecycle_msgs/GetState of the policy node
EPISODE_STEPS = 400  # transfer-cube episode length of the ACT sim tasks (8 s at 50 Hz)


@dataclass
class EpisodeResult:
    episode: int
    seed: int
    success: bool
    steps: int
    reward: int
    max_reward: int
    wall_s: float
    chunks: int  # ActionChunks the policy published during the episode (0 with the expert)


def camera_topic(camera: str = VIDEO_CAMERA) -> str:
    """The sim's topic of ``camera``, from the aloha_sim embodiment's camera table."""
    from unified_action_space import load_embodiment

    return load_embodiment(description.SIM_EMBODIMENT, kinematics=False).camera(camera).topic


def choose_driver(checkpoint: str) -> tuple[dict[str, str], str]:
    """Launch arguments of the sim bringup, and one line saying what drives the arms.

    The default checkpoint may be absent (the scripted expert drives then); a checkpoint the
    user names must be complete, or this raises BringupError.
    """
    if checkpoint.lower() == "none":
        reason = "DEMO_CHECKPOINT=none"
    elif (
        Path(checkpoint).expanduser().resolve() == DEFAULT_CHECKPOINT
        and not (DEFAULT_CHECKPOINT / "config.json").is_file()
    ):
        shown = (
            DEFAULT_CHECKPOINT.relative_to(REPO_ROOT)
            if DEFAULT_CHECKPOINT.is_relative_to(REPO_ROOT)
            else DEFAULT_CHECKPOINT
        )
        reason = f"no trained checkpoint at {shown} yet"
    else:
        path = description.check_checkpoint(checkpoint)
        return (
            {"policy": "true", "expert": "false", "checkpoint": str(path)},
            f"the LEARNED POLICY {path} (policy_node + action_executor)",
        )
    return (
        {"policy": "false", "expert": "true"},
        f"the SCRIPTED EXPERT (scripted_expert_node), not a learned policy: {reason}",
    )


class DemoClient:
    """The demo's own ROS node: resets episodes, follows their status, grabs camera frames."""

    def __init__(self, policy: bool) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from action_diffusion_msgs.msg import ActionChunk, EpisodeStatus
        from action_diffusion_msgs.srv import ResetEpisode

        self._rclpy = rclpy
        self._ResetEpisode = ResetEpisode
        self.node = rclpy.create_node("demo")
        self._lock = threading.Lock()
        self.status = None
        self.frames: list[np.ndarray] = []
        self.frame_stamps: list[float] = []
        self.recording = False
        self.node.create_subscription(EpisodeStatus, STATUS_TOPIC, self._on_status, 10)
        self.node.create_subscription(
            Image, camera_topic(), self._on_image, qos_profile_sensor_data
        )
        self.reset_client = self.node.create_client(ResetEpisode, RESET_SERVICE)
        # The policy clears its observation history and sampler state at each new episode; it
        # is ready once its lifecycle state is active (configured with the checkpoint loaded).
        self.policy_reset_client = None
        self.policy_state_client = None
        self.executor_reset_client = None
        self._policy_active = False
        self._state_request = None
        if policy:
            from lifecycle_msgs.srv import GetState
            from std_srvs.srv import Trigger

            self._GetState = GetState
            self._Trigger = Trigger
            # The executor drops the last episode's chunks (also those still in flight) and
            # restarts from the reset arms, instead of driving them back to the old pose.
            self.executor_reset_client = self.node.create_client(Trigger, EXECUTOR_RESET_SERVICE)
            self.policy_reset_client = self.node.create_client(ResetEpisode, POLICY_RESET_SERVICE)
            self.policy_state_client = self.node.create_client(GetState, POLICY_STATE_SERVICE)
            self.node.create_subscription(
                ActionChunk, description.ACTION_CHUNK_TOPIC, self._on_chunk, 10
            )
        self.chunks = 0  # ActionChunks seen (policy mode), to report that the policy acted
        # Episode 1's chunks and executed commands, for the chunks-vs-commands plot.
        self.chunk_records: list[ChunkRecord] = []
        self._episode_start = 0.0  # sim time of the last reset
        self.command_log: dict[str, list[tuple[float, np.ndarray]]] = {"left": [], "right": []}
        if policy:
            from std_msgs.msg import Float64MultiArray

            for arm in ("left", "right"):
                self.node.create_subscription(
                    Float64MultiArray,
                    f"/follower_{arm}/commands/joint_positions",
                    lambda msg, arm=arm: self._on_command(arm, msg),
                    10,
                )
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()

    def _spin(self) -> None:
        with contextlib.suppress(Exception):  # the executor shuts down under it at the end
            self.executor.spin()

    def _on_chunk(self, msg) -> None:
        self.chunks += 1
        if not self.recording:
            return
        slots = np.asarray(msg.slot_indices, dtype=np.int64)
        actions = np.asarray(msg.actions, dtype=np.float32).reshape(int(msg.horizon), len(slots))
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self._lock:
            if stamp > self._episode_start:
                self.chunk_records.append(
                    ChunkRecord(stamp, float(msg.step_period), slots, actions)
                )

    def _sim_time(self) -> float | None:
        status = self.status
        if status is None:
            return None
        return status.header.stamp.sec + status.header.stamp.nanosec * 1e-9

    def _on_command(self, arm: str, msg) -> None:
        # Commands carry no stamp: time them by the sim's latest status (within one tick).
        if not self.recording:
            return
        with self._lock:
            now = self._sim_time()
            if now is not None:
                self.command_log[arm].append((now, np.asarray(msg.data, dtype=np.float64)))

    def _on_status(self, msg) -> None:
        with self._lock:
            self.status = msg

    def _on_image(self, msg) -> None:
        if not self.recording or msg.encoding != "rgb8":
            return
        frame = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
        frame = frame[:, : msg.width * 3].reshape(msg.height, msg.width, 3).copy()
        with self._lock:
            self.frames.append(frame)
            self.frame_stamps.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)

    def latest_status(self):
        with self._lock:
            return self.status

    def _call(self, client, request, timeout: float):
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{client.srv_name} did not answer within {timeout:.0f} s")
            time.sleep(0.01)
        response = future.result()
        if not response.success:
            raise RuntimeError(f"{client.srv_name} refused: {response.message}")
        return response

    def reset(self, seed: int, timeout: float) -> int:
        request = self._ResetEpisode.Request(seed=seed, use_seed=True)
        seed = self._call(self.reset_client, request, timeout).seed
        if self.executor_reset_client is not None:
            self._call(self.executor_reset_client, self._Trigger.Request(), timeout)
        if self.policy_reset_client is not None:
            self._call(self.policy_reset_client, request, timeout)
        with self._lock:
            if self.recording:
                # The plot shows this episode only: nothing conditioned on, or sent in, the
                # previous one; later episodes leave it alone.
                self._episode_start = self._sim_time() or 0.0
                self.chunk_records.clear()
                self.command_log = {"left": [], "right": []}
        return seed

    def ready(self) -> bool:
        """The sim offers its reset service and, with a policy, the policy node is active."""
        if not self.reset_client.service_is_ready():
            return False
        if self.executor_reset_client and not self.executor_reset_client.service_is_ready():
            return False
        if self.policy_state_client is None or self._policy_active:
            return True
        if self._state_request is not None and self._state_request.done():
            state = self._state_request.result().current_state
            self._policy_active = state.label == "active"
            self._state_request = None
        elif self._state_request is None and self.policy_state_client.service_is_ready():
            self._state_request = self.policy_state_client.call_async(self._GetState.Request())
        return False

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def wait_until(predicate, timeout: float, runner: BringupRunner, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        exited = runner.exited()
        if exited:
            raise RuntimeError(f"node(s) stopped while waiting for {what}: {exited}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:.0f} s")
        time.sleep(0.02)


def run_episode(
    client: DemoClient, runner: BringupRunner, episode: int, seed: int, steps: int, timeout: float
) -> EpisodeResult:
    start = time.monotonic()
    seed = client.reset(seed, timeout=30.0)
    chunks_before = client.chunks

    def current():
        status = client.latest_status()
        return status if status is not None and status.seed == seed else None

    wait_until(lambda: current() is not None, 30.0, runner, f"status of the episode seed {seed}")
    wait_until(
        lambda: current().success or current().step >= steps,
        timeout,
        runner,
        f"the end of episode {episode} (seed {seed})",
    )
    status = current()
    return EpisodeResult(
        episode=episode,
        seed=seed,
        success=bool(status.success),
        steps=int(status.step),
        reward=int(status.reward),
        max_reward=int(status.max_reward),
        wall_s=round(time.monotonic() - start, 2),
        chunks=client.chunks - chunks_before,
    )


def write_video(frames: list[np.ndarray], stamps: list[float], path: Path) -> float:
    """mp4 at the camera's rate in sim time (so the video plays at real speed); returns fps."""
    import imageio.v2 as imageio

    duration = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    fps = (len(frames) - 1) / duration if duration > 0 else 10.0
    fps = float(np.clip(fps, 1.0, 60.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.mp4")
    with imageio.get_writer(partial, fps=fps, codec="libx264", quality=7) as writer:
        for frame in frames:
            writer.append_data(frame)
    os.replace(partial, path)
    return fps


def write_chunk_plot(client: DemoClient, path: Path) -> Path | None:
    """Episode 1's chunks against the commands sent, both arms, in unified units."""
    left, right = client.command_log["left"], client.command_log["right"]
    n = min(len(left), len(right))
    if not client.chunk_records or n == 0:
        return None
    from unified_action_space import layout, load_embodiment

    embodiment = load_embodiment(description.SIM_EMBODIMENT, kinematics=False)
    unified = embodiment.actions_from_commands(
        {"left": np.stack([c for _, c in left[:n]]), "right": np.stack([c for _, c in right[:n]])}
    )
    slots = [int(i) for i in embodiment.action_slots]
    times = np.asarray([t for t, _ in left[:n]])
    return plot_chunks_vs_commands(
        client.chunk_records,
        times,
        unified[:, slots],
        slots,
        [layout.slot_name(i) for i in slots],
        path,
        title=f"{TASK}, episode 1: predicted chunks (thin) vs executed commands (red)",
    )


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="demo", description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=int(os.environ.get("DEMO_EPISODES", 5)))
    # Seeds from 1000 on: the shipped policy never saw them (its demonstrations used 0-49).
    parser.add_argument("--seed", type=int, default=int(os.environ.get("DEMO_SEED", 1000)))
    parser.add_argument(
        "--checkpoint", default=os.environ.get("DEMO_CHECKPOINT", str(DEFAULT_CHECKPOINT))
    )
    parser.add_argument("--strategy", default="temporal_ensembling")
    parser.add_argument("--steps", type=int, default=EPISODE_STEPS, help="control steps/episode")
    parser.add_argument(
        "--episode-timeout", type=float, default=300.0, help="wall seconds per episode at most"
    )
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS)
    options = parser.parse_args(argv)
    if options.episodes < 1:
        parser.error(f"--episodes/DEMO_EPISODES must be >= 1, got {options.episodes}")
    return options


def main(argv=None) -> int:
    options = parse_args(argv)
    try:
        given, driver = choose_driver(options.checkpoint)
        given.update(task=TASK, strategy=options.strategy, use_sim_time="true")
        specs = description.describe("sim", given)
        domain = claim_private_domain()
    except BringupError as error:
        print(f"[demo] error: {error}", file=sys.stderr)
        return 2
    artifacts = options.artifacts
    artifacts.mkdir(parents=True, exist_ok=True)
    log_path = artifacts / "demo_nodes.log"
    print(f"[demo] task: {TASK}, {options.episodes} episode(s) from seed {options.seed}")
    print(f"[demo] driven by: {driver}")
    print(f"[demo] ROS domain: {domain} (set ROS_DOMAIN_ID to choose one)")
    print(f"[demo] nodes: {', '.join(s.name for s in specs)} (their output: {log_path})")

    import rclpy

    results: list[EpisodeResult] = []
    video = None
    with open(log_path, "w") as log, BringupRunner(specs, output=log, stop_timeout=5.0) as runner:
        rclpy.init()
        client = DemoClient(policy=given["policy"] == "true")
        try:
            wait_until(client.ready, 180.0, runner, "the nodes to be ready")
            for episode in range(options.episodes):
                client.recording = episode == 0
                result = run_episode(
                    client,
                    runner,
                    episode + 1,
                    options.seed + episode,
                    options.steps,
                    options.episode_timeout,
                )
                client.recording = False
                results.append(result)
                outcome = "SUCCESS" if result.success else "failure"
                print(
                    f"[demo] episode {result.episode}/{options.episodes} seed {result.seed}: "
                    f"{outcome} after {result.steps} steps (reward {result.reward}/"
                    f"{result.max_reward}, {result.wall_s:.1f} s wall"
                    + (f", {result.chunks} action chunks)" if given["policy"] == "true" else ")"),
                    flush=True,
                )
        except (RuntimeError, TimeoutError) as error:
            print(f"[demo] error: {error}; node output in {log_path}", file=sys.stderr)
            return 1
        finally:
            client.close()
            rclpy.try_shutdown()
        frames, stamps = client.frames, client.frame_stamps
        plot = write_chunk_plot(client, artifacts / f"demo_{TASK}_chunks.png")
        if plot is not None:
            print(f"[demo] predicted chunks vs executed commands, episode 1: {plot}")
    if frames:
        video = artifacts / f"demo_{TASK}.mp4"
        fps = write_video(frames, stamps, video)
        print(f"[demo] video of episode 1: {video} ({len(frames)} frames, {fps:.1f} fps)")
    else:
        print(f"[demo] no frames on {camera_topic()}: no video written")
    successes = sum(r.success for r in results)
    rate = successes / len(results)
    summary = {
        "task": TASK,
        "driven_by": driver,
        "episodes": len(results),
        "successes": successes,
        "success_rate": rate,
        "video": str(video) if video else None,
        "results": [asdict(r) for r in results],
    }
    write_atomic(artifacts / "demo_summary.json", json.dumps(summary, indent=2) + "\n")
    print(
        f"[demo] {TASK} success rate: {successes}/{len(results)} = {rate:.0%} "
        f"(driven by {driver.split(':')[0]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
