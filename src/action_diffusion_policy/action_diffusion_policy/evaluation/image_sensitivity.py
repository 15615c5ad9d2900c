"""Does a camera policy read its images? Chunks under swapped images against sampler noise.

A policy that ignores its cameras can still reach a low training loss from proprioception
alone (results/NOTES.md), so a low loss proves nothing. Here, at one state:

- ``swap_effect``: mean |chunk(image A) - chunk(image B)| with the same state and noise;
- ``mean_chunk_shift`` / ``mean_chunk_noise``: the same for the chunk averaged over the noise
  draws, against how much that average wobbles between two halves of the draws;
- ``sampler_spread``: mean |chunk(image A, noise i) - chunk(image A, noise j)|, what the
  sampler's own randomness moves the chunk by;
- ``keypoint_shift``: how far the encoder's spatial-softmax keypoints move between the images
  (in [-1, 1] image coordinates), where the encoder has keypoints.

Pure numpy/torch; the sim glue lives in benchmarks/image_sensitivity.py and the tests.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from action_diffusion_policy.types import Observation


def with_images(obs: Observation, images: dict[str, np.ndarray]) -> Observation:
    return dataclasses.replace(obs, images=images)


def noises(policy, count: int, seed: int = 0) -> list[np.ndarray]:
    gen = np.random.default_rng(seed)
    shape = (policy.config.horizon, policy.config.action_dim)
    return [gen.standard_normal(shape).astype(np.float32) for _ in range(count)]


def keypoints(policy, images: dict[str, np.ndarray]) -> np.ndarray | None:
    """(N_cameras, K, 2) keypoints of the newest frame of each camera, or None."""
    enc = policy.image_encoder
    if enc is None or not hasattr(enc, "keypoints"):
        return None
    out = []
    with torch.inference_mode():
        for cam in policy.spec.camera_names:
            frame = torch.from_numpy(np.ascontiguousarray(images[cam][-1])).permute(2, 0, 1)
            x = policy._crop(frame[None].float() / 255.0)  # the inference centre crop
            dtype = next(enc.parameters()).dtype
            out.append(enc.keypoints(x.to(dtype)).float()[0].numpy())
    return np.stack(out)


def image_sensitivity(policy, obs: Observation, images_a: dict, images_b: dict,
                      num_noises: int = 8) -> dict:
    """Swap effect, sampler spread and keypoint shift at ``obs``'s state (see module doc).

    Also the effect on the expected chunk (the mean over ``num_noises`` draws, the same draws
    for both images): ``mean_chunk_shift`` against ``mean_chunk_noise``, the same statistic
    between two halves of the draws with one image (how much the estimate itself wobbles).
    """
    eps = noises(policy, num_noises)
    chunks_a = np.stack([policy.predict_chunk(with_images(obs, images_a), n) for n in eps])
    chunks_b = np.stack([policy.predict_chunk(with_images(obs, images_b), n) for n in eps])
    swap = float(np.abs(chunks_a - chunks_b).mean())
    spread = float(np.mean([np.abs(chunks_a[i] - chunks_a[j]).mean()
                            for i in range(num_noises) for j in range(i + 1, num_noises)]))
    half = num_noises // 2
    shift = float(np.abs(chunks_a.mean(0) - chunks_b.mean(0)).mean())
    wobble = float(np.abs(chunks_a[:half].mean(0) - chunks_a[half:].mean(0)).mean())
    out = {"swap_effect": swap, "sampler_spread": spread,
           "ratio": swap / max(spread, 1e-12),
           "mean_chunk_shift": shift, "mean_chunk_noise": wobble,
           "mean_ratio": shift / max(wobble, 1e-12)}
    kp_a, kp_b = keypoints(policy, images_a), keypoints(policy, images_b)
    if kp_a is not None:
        out["keypoint_shift"] = float(np.abs(kp_a - kp_b).mean())
    return out
