"""DiT over action tokens with adaLN-Zero conditioning (Peebles and Xie 2023).

Each action step is a token. The condition c = embed(t) + MLP(observation features) regresses
per-block shift/scale/gate; the regressors are zero-initialised so every block starts as the
identity and the final layer outputs zeros.
"""

from __future__ import annotations

import torch
from torch import nn

from action_diffusion_policy.config import TransformerConfig
from action_diffusion_policy.models.common import Attention, Mlp, TimestepEmbedder


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden, heads, dropout=dropout)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden, int(hidden * mlp_ratio), dropout=dropout)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))
        nn.init.zeros_(self.ada[-1].weight)
        nn.init.zeros_(self.ada[-1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c).chunk(6, dim=-1)
        x = x + g1[:, None] * self.attn(modulate(self.norm1(x), sh1, sc1))
        return x + g2[:, None] * self.mlp(modulate(self.norm2(x), sh2, sc2))


class DiT(nn.Module):
    """(B, H, k) noisy chunk, (B,) time, ctx -> (B, H, k)."""

    def __init__(self, action_dim: int, horizon: int, global_cond_dim: int,
                 cfg: TransformerConfig):
        super().__init__()
        d = cfg.hidden
        self.x_in = nn.Linear(action_dim, d)
        self.pos = nn.Parameter(torch.randn(1, horizon, d) * 0.02)
        self.t_embed = TimestepEmbedder(d)
        self.cond_mlp = nn.Sequential(nn.Linear(global_cond_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(
            DiTBlock(d, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.out = nn.Linear(d, action_dim)
        for layer in (self.final_ada[-1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def prepare_condition(self, cond: dict) -> dict:
        return {"c_obs": self.cond_mlp(cond["global"])}  # once per chunk

    def forward(self, x: torch.Tensor, t: torch.Tensor, ctx: dict) -> torch.Tensor:
        c = self.t_embed(t).to(x.dtype) + ctx["c_obs"]  # (B, d)
        h = self.x_in(x) + self.pos[:, : x.shape[1]]
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        return self.out(modulate(self.final_norm(h), shift, scale))
