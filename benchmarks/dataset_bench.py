"""Dataset throughput: bag -> dataset build (frames/s) and training dataloader (samples/s).

    python benchmarks/dataset_bench.py [--episodes 2] [--seconds 10] [--camera-size 480 640]
        [--image-size 120 160] [--batch-size 64] [--batches 30] [--workers 0 2] [--bag DIR]

Bags: synthetic ALOHA-like episodes written with rosbags (2 cameras at 30 Hz, raw rgb8 and, in a
second build, JPEG CompressedImage; 2 joint states, 2 commands and the episode status at 50 Hz),
or real bags with --bag. Build: the real ``build_dataset`` path (read, decode, resize to
``--image-size``, resample to 50 Hz, write). Dataloader: ``ChunkDataset`` (2 observation steps,
horizon 64, both cameras) through ``torch.utils.data.DataLoader`` with shuffling, as training
uses it. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _bag_bytes(paths) -> int:
    return sum(f.stat().st_size for p in paths for f in Path(p).iterdir())


def write_bags(root: Path, episodes: int, seconds: float, camera_size, compressed: bool):
    from action_diffusion_policy.testing.synthetic_bag import write_synthetic_bag

    js = np.round(np.arange(0, seconds, 0.02) + 0.003, 9)
    cams = np.round(np.arange(0, seconds, 1 / 30), 9)
    paths = []
    for e in range(episodes):
        paths.append(write_synthetic_bag(
            root / f"ep{e}", js, js + 0.001, cams, js, image_size=tuple(camera_size),
            compressed=compressed,
            camera_topics=("/cameras/cam_high/image_raw", "/cameras/cam_left_wrist/image_raw"),
        ))
    return paths


def bench_build(bags, out: Path, image_size) -> dict:
    from action_diffusion_policy.data.build_dataset import build_dataset

    t0 = time.perf_counter()
    report = build_dataset(bags=bags, output=out, image_size=tuple(image_size), force=True,
                           progress=False)
    dt = time.perf_counter() - t0
    return {
        "frames": report["frames"],
        "seconds": round(dt, 2),
        "frames_per_s": round(report["frames"] / dt, 1),
        "bag_mb": round(_bag_bytes(bags) / 1e6, 1),
        "bag_mb_per_s": round(_bag_bytes(bags) / 1e6 / dt, 1),
        "dropped_ticks": report["dropped_ticks"],
    }


def bench_loader(dataset: Path, batch_size: int, batches: int, workers: int) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from action_diffusion_policy.data.dataset import ChunkDataset

    ds = ChunkDataset(dataset, n_obs_steps=2, horizon=64)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                        drop_last=True, persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        n += len(batch["action"])
    dt = time.perf_counter() - t0
    return {"workers": workers, "batch_size": batch_size, "samples": n,
            "samples_per_s": round(n / dt, 1),
            "batch_images_shape": list(batch["images"].shape) if "images" in batch else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--camera-size", nargs=2, type=int, default=(480, 640))
    ap.add_argument("--image-size", nargs=2, type=int, default=(120, 160))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    ap.add_argument("--bag", nargs="+", help="real bags instead of synthetic ones")
    ap.add_argument("--threads", type=int, default=1, help="torch/OpenCV threads")
    a = ap.parse_args()
    import cv2
    import torch

    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    work = Path(tempfile.mkdtemp(prefix="dataset_bench_"))
    result = {"cpu_count": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2),
              "image_size": list(a.image_size)}
    try:
        builds = {}
        if a.bag:
            builds["given_bags"] = bench_build(a.bag, work / "ds_given", a.image_size)
            dataset = work / "ds_given"
        else:
            result["synthetic"] = {"episodes": a.episodes, "seconds": a.seconds,
                                   "camera_size": list(a.camera_size), "cameras": 2}
            for name, compressed in (("raw_rgb8", False), ("jpeg", True)):
                bags = write_bags(work / f"bags_{name}", a.episodes, a.seconds, a.camera_size,
                                  compressed)
                builds[name] = bench_build(bags, work / f"ds_{name}", a.image_size)
                shutil.rmtree(work / f"bags_{name}")
            dataset = work / "ds_raw_rgb8"
        result["build"] = builds
        result["dataloader"] = [bench_loader(dataset, a.batch_size, a.batches, w)
                                for w in a.workers]
        result["load_avg_1min_end"] = round(os.getloadavg()[0], 2)
        print(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
