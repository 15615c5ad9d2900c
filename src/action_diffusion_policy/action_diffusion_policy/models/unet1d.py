"""Conditional 1D temporal U-Net over the action chunk, FiLM-conditioned (Chi et al. 2023).

Convolutions run along the horizon axis with the action dimensions as channels. Every residual
block gets a per-channel scale and bias (FiLM) from [diffusion-step embedding, observation
features]; the observation features are computed once per chunk.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from action_diffusion_policy.config import UNetConfig
from action_diffusion_policy.models.common import sinusoidal_embedding


class ConvNormAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, groups: int):
        super().__init__(nn.Conv1d(cin, cout, kernel, padding=kernel // 2),
                         nn.GroupNorm(groups, cout), nn.Mish())


class FiLMResBlock(nn.Module):
    """Two conv blocks with FiLM between them; the FiLM input is [step embedding, global]."""

    def __init__(self, cin: int, cout: int, cond_dim: int, kernel: int, groups: int,
                 step_dim: int):  # fmt: skip
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, kernel, groups)
        self.conv2 = ConvNormAct(cout, cout, kernel, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * cout))
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()
        self.step_dim = step_dim

    def film_global(self, glob: torch.Tensor) -> torch.Tensor:
        """The FiLM terms of the global condition, fixed for a chunk. Mish acts per element,
        so Linear(Mish([step, glob])) = W_step Mish(step) + W_glob Mish(glob) + b: the global
        part (over half the FiLM weights) is computed once per chunk, not at every step."""
        lin = self.film[1]
        return F.linear(F.mish(glob), lin.weight[:, self.step_dim:], lin.bias)

    def forward(self, x: torch.Tensor, step: torch.Tensor, film_glob: torch.Tensor,
                ) -> torch.Tensor:  # fmt: skip
        """step: (B, step_dim) embedding, Mish already applied; film_glob: film_global()."""
        y = self.conv1(x)
        film = F.linear(step, self.film[1].weight[:, : self.step_dim]) + film_glob
        scale, bias = film.unsqueeze(-1).chunk(2, dim=1)  # (B, C, 1) each
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
                FiLMResBlock(cin, cout, cond_dim, k, g, sdim),
                FiLMResBlock(cout, cout, cond_dim, k, g, sdim),
                nn.Conv1d(cout, cout, 3, 2, 1) if not last else nn.Identity(),
            ]))
        mid = dims[-1]
        self.mid = nn.ModuleList([FiLMResBlock(mid, mid, cond_dim, k, g, sdim) for _ in range(2)])
        self.up = nn.ModuleList()
        for cin, cout in reversed(pairs[1:]):  # one upsample per downsample
            self.up.append(nn.ModuleList([
                FiLMResBlock(2 * cout, cin, cond_dim, k, g, sdim),
                FiLMResBlock(cin, cin, cond_dim, k, g, sdim),
                nn.ConvTranspose1d(cin, cin, 4, 2, 1),
            ]))
        self.final = nn.Sequential(ConvNormAct(dims[1], dims[1], k, g),
                                   nn.Conv1d(dims[1], action_dim, 1))

    def _blocks(self) -> list[FiLMResBlock]:
        blocks = [b for res1, res2, _ in self.down for b in (res1, res2)]
        blocks += list(self.mid)
        return blocks + [b for res1, res2, _ in self.up for b in (res1, res2)]

    def prepare_condition(self, cond: dict) -> dict:
        glob = cond["global"]
        return {"global": glob, "film": [b.film_global(glob) for b in self._blocks()]}

    def forward(self, x: torch.Tensor, t: torch.Tensor, ctx: dict) -> torch.Tensor:
        glob = ctx["global"]
        step = F.mish(self.step_mlp(sinusoidal_embedding(t, self.step_dim).to(glob.dtype)))
        films = iter(ctx["film"])
        h = x.transpose(1, 2)  # (B, k, H)
        skips = []
        for res1, res2, down in self.down:
            h = res2(res1(h, step, next(films)), step, next(films))
            skips.append(h)
            h = down(h)
        for res in self.mid:
            h = res(h, step, next(films))
        for res1, res2, up in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            h = up(res2(res1(h, step, next(films)), step, next(films)))
        return self.final(h).transpose(1, 2)
