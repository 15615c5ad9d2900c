"""Simulated ALOHA speed and scripted-expert success (pure env + expert, no ROS).

    python benchmarks/sim_bench.py [--steps 500] [--render-size 240 320] [--seeds 50]
        [--tasks transfer_cube insertion] [--workers 1]

Speed: control steps per second (50 Hz control, 10 physics substeps each) of AlohaSimEnv with a
hold command, without rendering, with one camera (cam_high) rendered every step, and with the
three ALOHA cameras rendered every step, at ``--render-size``. Success: the scripted expert over
seeds 0..N-1 per task (the full episode length), as the end-to-end demos are generated.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("MUJOCO_GL", "egl")

from tqdm import tqdm

from aloha_sim.env import DEFAULT_CAMERAS, AlohaSimEnv
from aloha_sim.expert import EPISODE_LENGTHS, ScriptedExpert, run_episode


def steps_per_second(task: str, steps: int, render_size, cameras) -> float:
    env = AlohaSimEnv(task, render_size=render_size, cameras=cameras)
    env.reset(0)
    for cam in cameras:  # make the renderer before timing
        env.render(cam)
    start = time.perf_counter()
    for _ in range(steps):
        env.step()
        for cam in cameras:
            env.render(cam)
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def _episodes(task: str, seeds: list[int]) -> list[tuple[int, bool, int, float]]:
    env = AlohaSimEnv(task, render_size=None)
    expert = ScriptedExpert(task)
    out = []
    for seed in seeds:
        start = time.perf_counter()
        success = run_episode(env, expert, seed)
        out.append((seed, success, env.reward, time.perf_counter() - start))
    return out


def expert_success(task: str, n_seeds: int, workers: int) -> dict:
    seeds = list(range(n_seeds))
    chunks = [seeds[i::workers] for i in range(workers)]
    results = []
    with tqdm(total=n_seeds, desc=f"expert {task}") as bar:
        if workers == 1:
            for seed in seeds:
                results += _episodes(task, [seed])
                bar.update(1)
        else:
            with ProcessPoolExecutor(workers) as pool:
                for part in pool.map(_episodes, [task] * workers, chunks):
                    results += part
                    bar.update(len(part))
    results.sort()
    failed = [seed for seed, ok, _, _ in results if not ok]
    return {
        "seeds": n_seeds,
        "episode_length": EPISODE_LENGTHS[task],
        "success_rate": round(1 - len(failed) / n_seeds, 4),
        "failed_seeds": failed,
        "final_reward_of_failures": {seed: r for seed, ok, r, _ in results if not ok},
        "mean_episode_wall_s": round(sum(r[3] for r in results) / n_seeds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--render-size", type=int, nargs=2, default=(240, 320))
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--tasks", nargs="+", default=["transfer_cube", "insertion"])
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    size = tuple(args.render_size)

    speed = {"render_size_hw": list(size), "steps": args.steps}
    speed["steps_per_s_no_render"] = round(
        steps_per_second("transfer_cube", args.steps, None, ()), 1
    )
    speed["steps_per_s_render_cam_high"] = round(
        steps_per_second("transfer_cube", args.steps, size, ("cam_high",)), 1
    )
    speed["steps_per_s_render_3_cameras"] = round(
        steps_per_second("transfer_cube", args.steps, size, DEFAULT_CAMERAS), 1
    )
    report = {
        "benchmark": "sim_bench",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "control_hz": 50,
        "speed": speed,
        "expert": {task: expert_success(task, args.seeds, args.workers) for task in args.tasks},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
