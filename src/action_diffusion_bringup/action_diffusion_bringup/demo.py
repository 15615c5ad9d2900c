"""`make demo`: the transfer-cube task in the simulated ALOHA, closed loop through the ROS nodes.

Starts the `sim` bringup with the runner (the same nodes `sim.launch.py` starts), then, through
the sim episode client (`sim_client.SimClient`), resets the sim with a seed per episode
(`/sim/reset`), follows `/sim/episode_status` until success or the episode's end, prints the
success rate and writes a video of the first episode under artifacts/: the top camera
(`cam_high`, its topic from the aloha_sim embodiment's cameras) beside what the policy saw (the
same frame through the checkpoint's own preprocessing: resize and centre crop).

What drives the arms: the policy node + action executor when a trained checkpoint exists
(DEFAULT_CHECKPOINT, or DEMO_CHECKPOINT / --checkpoint); until then the scripted expert node,
which commands the follower arms on the same topics. The demo prints which one it is.

Environment: DEMO_EPISODES (default 5), DEMO_SEED (first seed, default 1000), DEMO_CHECKPOINT
(a checkpoint directory, or "none" to force the scripted expert).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np

from action_diffusion_bringup import description
from action_diffusion_bringup.chunk_plot import ChunkRecord, plot_chunks_vs_commands
from action_diffusion_bringup.description import BringupError
from action_diffusion_bringup.report import write_atomic
from action_diffusion_bringup.run import BringupRunner, claim_private_domain
from action_diffusion_bringup.sim_client import EPISODE_STEPS as TASK_EPISODE_STEPS
from action_diffusion_bringup.sim_client import EpisodeResult, SimClient

# Paths a user sees are shown relative to where make/demo runs (the workspace root).
REPO_ROOT = Path.cwd()
# The camera-only checkpoint: it sees nothing but cam_high and the joint states, as on a robot.
# The privileged one (it reads the cube's pose from the sim) stays: DEMO_CHECKPOINT=...
DEFAULT_CHECKPOINT = description.checkpoints_dir() / "transfer_cube_camera"
PRIVILEGED_CHECKPOINT = description.checkpoints_dir() / "transfer_cube"
ARTIFACTS = Path("artifacts")  # under the working directory, as the README says
TASK = "transfer_cube"
VIDEO_CAMERA = "cam_high"  # the camera the video shows
EPISODE_STEPS = TASK_EPISODE_STEPS[TASK]  # 400: 8 s at 50 Hz


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
            f"the LEARNED POLICY {path} (policy_node + action_executor), "
            f"{observation_label(path)}",
        )
    return (
        {"policy": "false", "expert": "true"},
        f"the SCRIPTED EXPERT (scripted_expert_node), not a learned policy: {reason}",
    )


def policy_view_spec(checkpoint: Path | None) -> tuple[list[str], tuple[int, int] | None, float]:
    """The checkpoint's cameras, image size and crop ratio (nothing for no checkpoint)."""
    if checkpoint is None:
        return [], None, 1.0
    from action_diffusion_policy.checkpoint import read_checkpoint_config

    model = read_checkpoint_config(checkpoint)["policy_config"]
    size = model.get("image_size")
    return (list(model.get("camera_names") or []), tuple(size) if size else None,
            float(model.get("crop_ratio", 1.0)))


def observation_label(checkpoint: Path) -> str:
    """What the policy reads, in the words README and results/ use."""
    from action_diffusion_policy.checkpoint import CheckpointError, read_checkpoint_config

    try:
        model = read_checkpoint_config(checkpoint)["policy_config"]
    except (CheckpointError, KeyError, OSError, ValueError) as error:
        return f"its observation unknown ({error})"
    cameras = list(model.get("camera_names") or [])
    if model.get("env_state_dim"):
        return ("PRIVILEGED SIM STATE: it reads the objects' poses from /sim/episode_status, "
                "which no real robot publishes")
    return f"camera-only: it sees {' + '.join(cameras)} and the joint states, nothing else"


class EpisodeRecorder:
    """What the demo keeps of an episode: camera frames for the video, and the policy's chunks
    and the executed commands for the plot. Subscribes on the client's node; records while
    ``recording`` is set, the chunks and commands from the client's next reset on.

    frames[camera], frame_stamps[camera]: (H, W, 3) uint8 RGB frames and their sim times (s),
    one list per camera in ``cameras``.
    """

    def __init__(self, client: SimClient, cameras: tuple[str, ...], policy: bool) -> None:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from action_diffusion_msgs.msg import ActionChunk
        from unified_action_space import load_embodiment

        self.client = client
        self.recording = False
        self._lock = threading.Lock()
        self.frames: dict[str, list[np.ndarray]] = {camera: [] for camera in cameras}
        self.frame_stamps: dict[str, list[float]] = {camera: [] for camera in cameras}
        for camera in cameras:
            client.node.create_subscription(
                Image,
                camera_topic(camera),
                lambda msg, camera=camera: self._on_image(camera, msg),
                qos_profile_sensor_data,
            )
        # The episode's chunks and executed commands, for the chunks-vs-commands plot.
        self.chunk_records: list[ChunkRecord] = []
        self._episode_start = 0.0  # sim time of the last reset
        embodiment = load_embodiment(description.SIM_EMBODIMENT, kinematics=False)
        self.command_log: dict[str, list[tuple[float, np.ndarray]]] = {
            arm.name: [] for arm in embodiment.arms
        }
        if policy:
            from std_msgs.msg import Float64MultiArray

            client.node.create_subscription(
                ActionChunk, description.ACTION_CHUNK_TOPIC, self._on_chunk, 10
            )
            for arm in embodiment.arms:  # the sim's commands: Float64MultiArray
                client.node.create_subscription(
                    Float64MultiArray,
                    arm.command_topic,
                    lambda msg, arm=arm.name: self._on_command(arm, msg),
                    10,
                )
        client.on_reset.append(self._restart)

    def _restart(self, _seed: int) -> None:
        with self._lock:
            if self.recording:
                # The plot shows this episode only: nothing conditioned on, or sent in, the
                # previous one; later episodes leave it alone.
                self._episode_start = self.client.sim_time() or 0.0
                self.chunk_records.clear()
                self.command_log = {arm: [] for arm in self.command_log}

    def _on_chunk(self, msg) -> None:
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

    def _on_command(self, arm: str, msg) -> None:
        # Commands carry no stamp: time them by the sim's latest status (within one tick).
        if not self.recording:
            return
        now = self.client.sim_time()
        with self._lock:
            if now is not None:
                self.command_log[arm].append((now, np.asarray(msg.data, dtype=np.float64)))

    def _on_image(self, camera: str, msg) -> None:
        if not self.recording or msg.encoding != "rgb8":
            return
        frame = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
        frame = frame[:, : msg.width * 3].reshape(msg.height, msg.width, 3).copy()
        with self._lock:
            self.frames[camera].append(frame)
            self.frame_stamps[camera].append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)


def policy_view(frame: np.ndarray, size: tuple[int, int] | None, crop_ratio: float
                ) -> np.ndarray:
    """``frame`` as the policy sees it (resize to the checkpoint size, centre crop), scaled
    back up with nearest-neighbour so its pixels show, to the frame's height."""
    import cv2

    from action_diffusion_policy.data.images import resize
    from action_diffusion_policy.policy import crop_size

    small = resize(frame, size)
    h, w = small.shape[:2]
    ch, cw = crop_size((h, w), crop_ratio)
    top, left = (h - ch) // 2, (w - cw) // 2
    small = small[top: top + ch, left: left + cw]
    scale = frame.shape[0] / ch
    return cv2.resize(small, (round(cw * scale), frame.shape[0]), interpolation=cv2.INTER_NEAREST)


def side_by_side(frame: np.ndarray, cameras: list[str], size, crop_ratio: float) -> np.ndarray:
    """The scene (left) and what the policy saw from that camera (right), labelled."""
    import cv2

    if VIDEO_CAMERA in cameras and size is not None:
        right = policy_view(frame, size, crop_ratio)
        from action_diffusion_policy.policy import crop_size

        ch, cw = crop_size(size, crop_ratio)
        label = f"policy input: {cw}x{ch} crop of {size[1]}x{size[0]}"
    else:
        right = np.zeros_like(frame)
        label = "no camera: privileged sim state"
    out = np.concatenate([frame, np.full((frame.shape[0], 4, 3), 255, np.uint8), right], 1)
    for x, text in ((6, f"scene ({VIDEO_CAMERA})"), (frame.shape[1] + 10, label)):
        cv2.putText(out, text, (x, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1,
                    cv2.LINE_AA)
    # H.264 encoders work in 16-pixel blocks: pad with black instead of letting them rescale.
    h, w = out.shape[:2]
    return np.pad(out, ((0, -h % 16), (0, -w % 16), (0, 0)))


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


def write_chunk_plot(recorder: EpisodeRecorder, path: Path) -> Path | None:
    """Episode 1's chunks against the commands sent, both arms, in unified units."""
    left, right = recorder.command_log["left"], recorder.command_log["right"]
    n = min(len(left), len(right))
    if not recorder.chunk_records or n == 0:
        return None
    from unified_action_space import layout, load_embodiment

    embodiment = load_embodiment(description.SIM_EMBODIMENT, kinematics=False)
    unified = embodiment.actions_from_commands(
        {"left": np.stack([c for _, c in left[:n]]), "right": np.stack([c for _, c in right[:n]])}
    )
    slots = [int(i) for i in embodiment.action_slots]
    times = np.asarray([t for t, _ in left[:n]])
    return plot_chunks_vs_commands(
        recorder.chunk_records,
        times,
        unified[:, slots],
        slots,
        [layout.slot_name(i) for i in slots],
        path,
        title=f"{TASK}, episode 1: predicted chunks (thin) vs executed commands (red)",
    )


def print_episode(result: EpisodeResult, episodes: int, policy: bool) -> None:
    outcome = "SUCCESS" if result.success else "failure"
    print(
        f"[demo] episode {result.episode}/{episodes} seed {result.seed}: "
        f"{outcome} after {result.steps} steps (reward {result.reward}/"
        f"{result.max_reward}, {result.wall_s:.1f} s wall"
        + (f", {result.chunks} action chunks)" if policy else ")"),
        flush=True,
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

    results: list[EpisodeResult] = []
    video = None
    policy = given["policy"] == "true"
    with open(log_path, "w") as log, BringupRunner(specs, output=log, stop_timeout=5.0) as runner:
        with SimClient(runner, policy=policy, node_name="demo") as client:
            recorder = EpisodeRecorder(client, (VIDEO_CAMERA,), policy=policy)
            try:
                client.wait_until(client.ready, 180.0, "the nodes to be ready")
                for episode in range(options.episodes):
                    recorder.recording = episode == 0
                    result = client.run_episode(
                        episode + 1, options.seed + episode, options.steps, options.episode_timeout
                    )
                    recorder.recording = False
                    results.append(result)
                    print_episode(result, options.episodes, policy)
            except (RuntimeError, TimeoutError) as error:
                print(f"[demo] error: {error}; node output in {log_path}", file=sys.stderr)
                return 1
        frames, stamps = recorder.frames[VIDEO_CAMERA], recorder.frame_stamps[VIDEO_CAMERA]
        plot = write_chunk_plot(recorder, artifacts / f"demo_{TASK}_chunks.png")
        if plot is not None:
            print(f"[demo] predicted chunks vs executed commands, episode 1: {plot}")
    if frames:
        video = artifacts / f"demo_{TASK}.mp4"
        if policy:  # the scene beside what the policy saw
            cameras, size, crop = policy_view_spec(Path(given["checkpoint"]))
            frames = [side_by_side(f, cameras, size, crop) for f in frames]
        fps = write_video(frames, stamps, video)
        print(f"[demo] video of episode 1: {video} ({len(frames)} frames, {fps:.1f} fps"
              + ("; left the scene, right what the policy saw)" if policy else ")"))
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
