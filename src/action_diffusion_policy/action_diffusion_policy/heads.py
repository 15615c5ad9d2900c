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
import math
from collections.abc import Callable
from dataclasses import dataclass

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


# --- real-time chunking (Black et al. 2025, arXiv 2506.07339) ------------------------------
RTC_MAX_GUIDANCE = 5.0  # beta: the guidance weight's clip, as in the paper
RTC_JACOBIANS = ("vjp", "identity")  # Guidance.jacobian


def rtc_weights(horizon: int, delay: int, execution_horizon: int, prefix_len: int) -> torch.Tensor:
    """The paper's soft mask over the chunk's rows: 1 for the ``delay`` rows that run while
    the chunk is computed, an exponential decay c (e^c - 1) / (e - 1) with
    c = (H - s - i) / (H - s - d + 1) up to row H - s, 0 after (and past the prefix)."""
    h, d, s = int(horizon), int(delay), int(execution_horizon)
    i = torch.arange(h, dtype=torch.float32)
    c = (h - s - i) / max(1, h - s - d + 1)
    w = torch.where(i < d, torch.ones(h),
                    torch.where(i < h - s, c * (torch.exp(c) - 1) / (math.e - 1), torch.zeros(h)))
    w[int(prefix_len):] = 0.0
    return w.clamp(0.0, 1.0)


@dataclass
class Guidance:
    """Inpainting target for guided sampling: ``target`` (B, H, k) normalized actions, with
    ``weights`` (H,) (``rtc_weights``) saying how hard each row is held to it."""

    target: torch.Tensor
    weights: torch.Tensor
    max_guidance: float = RTC_MAX_GUIDANCE
    # "vjp": the paper's pseudo-inverse guidance, the error pulled back through the data
    # estimate's Jacobian (a backward pass per step). "identity": that Jacobian taken as the
    # identity, so no gradients: one forward pass per step, as plain sampling.
    jacobian: str = "vjp"

    @property
    def frozen(self) -> torch.Tensor:
        """(H,) bool: the rows that run before the chunk arrives (weight 1). Besides the
        guidance, these are set on the noise-to-target path after every step, so they come out
        as the target itself: a strongly conditioned policy has a small Jacobian, and
        guidance alone would leave them where the model wants them."""
        return self.weights >= 1.0

    def pin(self, x: torch.Tensor, noise: torch.Tensor, signal: float, noise_level: float):
        """Frozen rows of ``x`` := signal * target + noise_level * noise."""
        rows = self.frozen.to(x.device)
        if rows.any():
            x = x.clone()
            x[:, rows] = signal * self.target[:, rows] + noise_level * noise[:, rows]
        return x

    def correction(self, x: torch.Tensor, x0_of: Callable, tau: float, dt: float = 1.0):
        """(x0 estimate, guidance vector) at ``x``: the VJP of the weighted error through the
        estimate (pseudo-inverse guidance), scaled by the clipped weight of the paper.

        One more clip of ours: a step of ``dt`` along the guidance never moves the chunk
        further than the weighted error itself (per sample, Frobenius norm). Where the
        backbone's Jacobian is large the unclipped step overshoots, and chained chunks (each
        the next one's prefix) then grow without bound."""
        if self.jacobian == "identity":
            x0 = x0_of(x)
            err = (self.target - x0) * self.weights.to(x0)[None, :, None]
            g = err
        else:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                x0 = x0_of(xg)
                err = (self.target - x0) * self.weights.to(x0)[None, :, None]
                (g,) = torch.autograd.grad(x0, xg, grad_outputs=err)
        if tau <= 0.0:
            w = self.max_guidance
        else:
            r2 = (1 - tau) ** 2 / (tau**2 + (1 - tau) ** 2)
            w = min(self.max_guidance, (1 - tau) / (tau * r2))
        g = w * g.detach()
        step = (dt * g).flatten(1).norm(dim=1)
        bound = err.detach().flatten(1).norm(dim=1)
        scale = torch.where(step > bound, bound / step.clamp_min(1e-12), torch.ones_like(step))
        return x0.detach(), g * scale[:, None, None]


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
    def sample(self, model_fn: ModelFn, noise: torch.Tensor,
               guide: Guidance | None = None) -> torch.Tensor:  # fmt: skip
        """``guide``: RTC inpainting. The x0 estimate of each step is pulled toward the target
        by the same guidance as the flow head's (tau = the step's signal fraction
        sqrt(abar) / (sqrt(abar) + sqrt(1 - abar))), and the step is taken from it."""
        gen = generator_from_noise(noise)
        self.sampler.set_timesteps(self.num_inference_steps, device=noise.device)
        x = noise.float()
        abar_all = self.train_scheduler.alphas_cumprod.to(x.device)
        for t in self.sampler.timesteps:
            tt = t.expand(x.shape[0])
            if guide is None:
                out = model_fn(x, tt).float()
            else:
                a, b = abar_all[t].sqrt(), (1 - abar_all[t]).sqrt()

                def x0_of(xg, tt=tt, a=a, b=b):
                    pred = model_fn(xg, tt).float()
                    return (xg - b * pred) / a if self.prediction_type == "epsilon" else pred

                x0, g = guide.correction(x, x0_of, float(a / (a + b)),
                                         1.0 / self.num_inference_steps)
                x0 = x0 + g / self.num_inference_steps  # per step, as the flow head's dt * g
                out = (x - a * x0) / b if self.prediction_type == "epsilon" else x0
            x = self.sampler.step(out, t, x, generator=gen).prev_sample
            if guide is not None:
                prev = self.sampler.previous_timestep(t) if hasattr(
                    self.sampler, "previous_timestep") else t - self.num_train_timesteps // \
                    self.num_inference_steps  # fmt: skip
                abar = abar_all[prev] if prev >= 0 else torch.ones((), device=x.device)
                x = guide.pin(x, noise.float(), float(abar.sqrt()), float((1 - abar).sqrt()))
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
    def sample(self, model_fn: ModelFn, noise: torch.Tensor,
               guide: Guidance | None = None) -> torch.Tensor:  # fmt: skip
        """``guide``: RTC inpainting (the paper's guided Euler step; its tau = 1 - t)."""
        x = noise.float()
        dt = 1.0 / self.num_inference_steps
        for i in range(self.num_inference_steps):
            t = torch.full((x.shape[0],), 1.0 - i * dt, device=x.device)
            if guide is None:
                x = x - dt * model_fn(x, t * FLOW_TIME_SCALE).float()
                continue
            velocity = {}

            def x0_of(xg, t=t, velocity=velocity):
                u = model_fn(xg, t * FLOW_TIME_SCALE).float()
                velocity["u"] = u
                return xg - t[:, None, None] * u  # the straight path's data estimate

            _, g = guide.correction(x, x0_of, i * dt, dt)
            x = x - dt * (velocity["u"].detach() - g)
            t_next = 1.0 - (i + 1) * dt
            x = guide.pin(x, noise.float(), 1.0 - t_next, t_next)
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
    def sample(self, model_fn: ModelFn, noise: torch.Tensor,
               guide: Guidance | None = None) -> torch.Tensor:  # fmt: skip
        if guide is not None:
            raise ValueError("real-time chunking needs a generative head (flow or ddpm); "
                             "the regression head has no sampling to guide")
        t = torch.zeros(noise.shape[0], device=noise.device)
        return model_fn(torch.zeros_like(noise), t).float()


def make_head(cfg: PolicyConfig) -> DiffusionHead | FlowMatchingHead | RegressionHead:
    return {"ddpm": DiffusionHead, "flow": FlowMatchingHead,
            "regression": RegressionHead}[cfg.head](cfg)
