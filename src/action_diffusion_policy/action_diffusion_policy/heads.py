"""Generative heads: how a backbone's output becomes a training loss and a sampled chunk.

Both heads work in normalized action space on (B, H, k) tensors and call the backbone through
``model_fn(x, t) -> (B, H, k)``, where the observation condition is already bound (encoded once
per chunk by the policy).

- ``DiffusionHead``: DDPM training (Ho et al.; Chi et al. 2023) with epsilon or sample
  prediction, sampled by the diffusers ``DDPMScheduler``, ``DDIMScheduler`` (eta = 0) or
  ``DPMSolverMultistepScheduler`` (algorithm_type ``dpmsolver++``).
- ``FlowMatchingHead``: conditional flow matching on the straight path (pi0).
- ``RegressionHead``: the MSE-regression baseline the generative heads are compared against.

Determinism: given ``noise`` the result is a pure function of it. DDIM and DPM-Solver++ add no
noise while sampling; the DDPM sampler's per-step noise comes from a generator seeded from the
bytes of ``noise``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
import torch.nn.functional as F

from action_diffusion_policy.config import PolicyConfig

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Flow time is fed to the backbone scaled to the same range as diffusion step indices.
FLOW_TIME_SCALE = 1000.0


def generator_from_noise(noise: torch.Tensor) -> torch.Generator:
    digest = hashlib.blake2b(noise.detach().float().cpu().numpy().tobytes(), digest_size=8)
    gen = torch.Generator(device=noise.device)
    gen.manual_seed(int.from_bytes(digest.digest(), "little") >> 1)
    return gen


class DiffusionHead:
    def __init__(self, cfg: PolicyConfig):
        from diffusers import (
            DDIMScheduler,
            DDPMScheduler,
            DPMSolverMultistepScheduler,
        )

        common = dict(num_train_timesteps=cfg.num_train_timesteps,
                      beta_schedule=cfg.beta_schedule, prediction_type=cfg.prediction_type)
        self.prediction_type = cfg.prediction_type
        self.num_train_timesteps = cfg.num_train_timesteps
        self.num_inference_steps = cfg.num_inference_steps
        self.train_scheduler = DDPMScheduler(**common, clip_sample=cfg.clip_sample)
        # "trailing" spacing starts sampling at the last (pure-noise) training step.
        if cfg.sampler == "ddpm":
            self.sampler = DDPMScheduler(**common, clip_sample=cfg.clip_sample,
                                         timestep_spacing="trailing")
        elif cfg.sampler == "ddim":
            self.sampler = DDIMScheduler(**common, clip_sample=cfg.clip_sample,
                                         set_alpha_to_one=True, timestep_spacing="trailing")
        else:
            self.sampler = DPMSolverMultistepScheduler(
                **common, algorithm_type="dpmsolver++", solver_order=2,
                timestep_spacing="trailing", lower_order_final=True)

    def loss(self, model_fn: ModelFn, x0: torch.Tensor) -> torch.Tensor:
        """Per-element squared error (B, H, k) of the denoising objective."""
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.num_train_timesteps, (x0.shape[0],), device=x0.device)
        xt = self.train_scheduler.add_noise(x0, noise, t)
        pred = model_fn(xt, t).float()
        target = noise if self.prediction_type == "epsilon" else x0
        return F.mse_loss(pred, target, reduction="none")

    @torch.no_grad()
    def sample(self, model_fn: ModelFn, noise: torch.Tensor) -> torch.Tensor:
        gen = generator_from_noise(noise)
        self.sampler.set_timesteps(self.num_inference_steps, device=noise.device)
        x = noise.float()
        for t in self.sampler.timesteps:
            out = model_fn(x, t.expand(x.shape[0])).float()
            x = self.sampler.step(out, t, x, generator=gen).prev_sample
        return x


class FlowMatchingHead:
    """Conditional flow matching on the straight noise-to-data path.

    Time convention: t = 1 is pure noise, t = 0 is data; x_t = (1 - t) x0 + t eps, and the
    backbone predicts the velocity dx_t/dt = eps - x0. Training times favour the noisy end as in
    pi0: u ~ Beta(alpha, beta) (mass near 1 for alpha > beta) and t = 1 - (1 - t_min)(1 - u).
    Sampling integrates from t = 1 to t = 0 with forward Euler in num_inference_steps steps.
    """

    def __init__(self, cfg: PolicyConfig):
        self.alpha, self.beta = cfg.flow_beta_alpha, cfg.flow_beta_beta
        self.t_min = cfg.flow_t_min
        self.num_inference_steps = cfg.num_inference_steps

    def sample_time(self, n: int, device) -> torch.Tensor:
        u = torch.distributions.Beta(self.alpha, self.beta).sample((n,)).to(device)
        return 1.0 - (1.0 - self.t_min) * (1.0 - u)

    def loss(self, model_fn: ModelFn, x0: torch.Tensor) -> torch.Tensor:
        noise = torch.randn_like(x0)
        t = self.sample_time(x0.shape[0], x0.device)
        tb = t[:, None, None]
        xt = (1.0 - tb) * x0 + tb * noise
        pred = model_fn(xt, t * FLOW_TIME_SCALE).float()
        return F.mse_loss(pred, noise - x0, reduction="none")

    @torch.no_grad()
    def sample(self, model_fn: ModelFn, noise: torch.Tensor) -> torch.Tensor:
        x = noise.float()
        dt = 1.0 / self.num_inference_steps
        for i in range(self.num_inference_steps):
            t = torch.full((x.shape[0],), 1.0 - i * dt, device=x.device)
            x = x - dt * model_fn(x, t * FLOW_TIME_SCALE).float()
        return x


class RegressionHead:
    """Baseline, not generative: one backbone pass on a zero chunk at t = 0, trained with MSE.

    It regresses to the conditional mean, so on multimodal data it lands between the modes.
    ``noise`` is ignored.
    """

    def __init__(self, cfg: PolicyConfig):
        self.num_inference_steps = 1

    def loss(self, model_fn: ModelFn, x0: torch.Tensor) -> torch.Tensor:
        t = torch.zeros(x0.shape[0], device=x0.device)
        return F.mse_loss(model_fn(torch.zeros_like(x0), t).float(), x0, reduction="none")

    @torch.no_grad()
    def sample(self, model_fn: ModelFn, noise: torch.Tensor) -> torch.Tensor:
        t = torch.zeros(noise.shape[0], device=noise.device)
        return model_fn(torch.zeros_like(noise), t).float()


def make_head(cfg: PolicyConfig) -> DiffusionHead | FlowMatchingHead | RegressionHead:
    return {"ddpm": DiffusionHead, "flow": FlowMatchingHead,
            "regression": RegressionHead}[cfg.head](cfg)
