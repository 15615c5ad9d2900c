"""Conditional 1D temporal U-Net over the action chunk, FiLM-conditioned (Chi et al. 2023).

Convolutions run along the horizon axis with the action dimensions as channels. Every residual
block gets a per-channel scale and bias (FiLM) from [diffusion-step embedding, observation
features]; the observation features are computed once per chunk.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from action_diffusion_policy.config import UNetConfig
from action_diffusion_policy.models.common import sinusoidal_embedding


class ConvNormAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, groups: int):
        super().__init__(nn.Conv1d(cin, cout, kernel, padding=kernel // 2),
                         nn.GroupNorm(groups, cout), nn.Mish())


class FiLMResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond_dim: int, kernel: int, groups: int):
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, kernel, groups)
        self.conv2 = ConvNormAct(cout, cout, kernel, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * cout))
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x)
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)  # (B, C, 1) each
        y = self.conv2(y * scale + bias)
        return y + self.skip(x)


class ConditionalUnet1D(nn.Module):
    """(B, H, k) noisy chunk, (B,) step, ctx -> (B, H, k)."""

    def __init__(self, action_dim: int, global_cond_dim: int, cfg: UNetConfig):
        super().__init__()
        dims = [action_dim, *cfg.down_dims]
        sdim = cfg.step_embed_dim
        self.step_dim = sdim
        self.step_mlp = nn.Sequential(nn.Linear(sdim, 4 * sdim), nn.Mish(),
                                      nn.Linear(4 * sdim, sdim))
        cond_dim = sdim + global_cond_dim
        k, g = cfg.kernel_size, cfg.n_groups
        pairs = list(itertools.pairwise(dims))
        self.down = nn.ModuleList()
        for i, (cin, cout) in enumerate(pairs):
            last = i == len(pairs) - 1
            self.down.append(nn.ModuleList([
                FiLMResBlock(cin, cout, cond_dim, k, g),
                FiLMResBlock(cout, cout, cond_dim, k, g),
                nn.Conv1d(cout, cout, 3, 2, 1) if not last else nn.Identity(),
            ]))
        mid = dims[-1]
        self.mid = nn.ModuleList([FiLMResBlock(mid, mid, cond_dim, k, g) for _ in range(2)])
        self.up = nn.ModuleList()
        for cin, cout in reversed(pairs[1:]):  # one upsample per downsample
            self.up.append(nn.ModuleList([
                FiLMResBlock(2 * cout, cin, cond_dim, k, g),
                FiLMResBlock(cin, cin, cond_dim, k, g),
                nn.ConvTranspose1d(cin, cin, 4, 2, 1),
            ]))
        self.final = nn.Sequential(ConvNormAct(dims[1], dims[1], k, g),
                                   nn.Conv1d(dims[1], action_dim, 1))

    def prepare_condition(self, cond: dict) -> dict:
        return {"global": cond["global"]}

    def forward(self, x: torch.Tensor, t: torch.Tensor, ctx: dict) -> torch.Tensor:
        glob = ctx["global"]
        step = self.step_mlp(sinusoidal_embedding(t, self.step_dim).to(glob.dtype))
        cond = torch.cat([step, glob.expand(len(step), -1)], dim=-1)
        h = x.transpose(1, 2)  # (B, k, H)
        skips = []
        for res1, res2, down in self.down:
            h = res2(res1(h, cond), cond)
            skips.append(h)
            h = down(h)
        for res in self.mid:
            h = res(h, cond)
        for res1, res2, up in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            h = up(res2(res1(h, cond), cond))
        return self.final(h).transpose(1, 2)
