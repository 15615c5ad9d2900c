"""RDT-style transformer (Liu et al. 2024, RDT-1B), sized by a preset.

Differences from DiT, as in RDT: RMSNorm instead of LayerNorm, RMS-normalised queries and keys,
conditions injected by cross-attention that alternates between image tokens (even layers) and
language tokens (odd layers), and a non-linear MLP decoder whose last layer starts at zero.

The token sequence is ``[time, control frequency, state (T tokens), noisy actions (H tokens)]``.
State and actions are scattered into the 128-slot unified vector and concatenated with the
128-dim mask of the slots that are present, so one model can serve several embodiments. The
"image" stream also carries the low-dim observation (state + env_state per step), so a low-dim
policy has something to attend to. Cross-attention K/V are computed once per chunk.
"""

from __future__ import annotations

import torch
from torch import nn

from action_diffusion_policy.config import NUM_SLOTS, TransformerConfig
from action_diffusion_policy.models.common import Attention, Mlp, RMSNorm, TimestepEmbedder


class RDTBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = RMSNorm(hidden)
        self.attn = Attention(hidden, heads, qk_norm=True, dropout=dropout)
        self.norm2 = RMSNorm(hidden)
        self.cross = Attention(hidden, heads, qk_norm=True, dropout=dropout)
        self.norm3 = RMSNorm(hidden)
        self.mlp = Mlp(hidden, int(hidden * mlp_ratio), dropout=dropout)

    def forward(self, x, kv, kv_mask):
        x = x + self.attn(self.norm1(x))
        x = x + self.cross(self.norm2(x), kv=kv, kv_mask=kv_mask)
        return x + self.mlp(self.norm3(x))


def _unified_adaptor(hidden: int) -> nn.Module:
    # (values[128] | mask[128]) -> token
    return nn.Sequential(nn.Linear(2 * NUM_SLOTS, hidden), nn.GELU(approximate="tanh"),
                         nn.Linear(hidden, hidden))


class RDT(nn.Module):
    """(B, H, k) noisy chunk, (B,) time, ctx -> (B, H, k)."""

    def __init__(self, action_slots: list[int], state_slots: list[int], horizon: int,
                 n_obs_steps: int, lowdim_dim: int, img_token_dim: int, num_img_tokens: int,
                 lang_dim: int, cfg: TransformerConfig):
        super().__init__()
        d = cfg.hidden
        self.register_buffer("action_idx", torch.tensor(action_slots, dtype=torch.long),
                             persistent=False)
        self.register_buffer("state_idx", torch.tensor(state_slots, dtype=torch.long),
                             persistent=False)
        self.t_embed = TimestepEmbedder(d)
        self.freq_embed = TimestepEmbedder(d)
        self.state_adaptor = _unified_adaptor(d)
        self.action_adaptor = _unified_adaptor(d)
        self.pos = nn.Parameter(torch.randn(1, 2 + n_obs_steps + horizon, d) * 0.02)
        # condition streams
        self.img_proj = nn.Linear(img_token_dim, d) if num_img_tokens else None
        self.lowdim_proj = nn.Linear(lowdim_dim, d) if lowdim_dim else None
        n_img = num_img_tokens + (n_obs_steps if lowdim_dim else 0)
        self.img_pos = nn.Parameter(torch.randn(1, max(n_img, 1), d) * 0.02)
        self.lang_proj = nn.Linear(lang_dim, d) if lang_dim else None
        self.null_token = nn.Parameter(torch.zeros(1, 1, d))  # when a stream is empty
        self.blocks = nn.ModuleList(
            RDTBlock(d, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        self.final_norm = RMSNorm(d)
        self.decoder = Mlp(d, d, NUM_SLOTS)
        nn.init.zeros_(self.decoder.fc2.weight)
        nn.init.zeros_(self.decoder.fc2.bias)

    def _unified(self, values: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(..., n) values on slots idx -> (..., 256) [unified values | mask]."""
        full = values.new_zeros(*values.shape[:-1], NUM_SLOTS)
        full[..., idx] = values
        mask = values.new_zeros(NUM_SLOTS)
        mask[idx] = 1.0
        return torch.cat([full, mask.expand_as(full)], dim=-1)

    def prepare_condition(self, cond: dict) -> dict:
        """Encode the condition streams and every layer's cross-attention K/V, once per chunk."""
        b = cond["global"].shape[0]
        img = []
        if self.img_proj is not None:
            img.append(self.img_proj(cond["img_tokens"]))
        if self.lowdim_proj is not None:
            img.append(self.lowdim_proj(cond["lowdim"]))
        img = (torch.cat(img, 1) + self.img_pos) if img else self.null_token.expand(b, 1, -1)
        lang, lang_mask = cond.get("lang"), cond.get("lang_mask")
        if self.lang_proj is not None and lang is not None:
            lang = self.lang_proj(lang)
        else:
            lang, lang_mask = self.null_token.expand(b, 1, -1), None
        streams = [(img, None), (lang, lang_mask)]
        kvs = []
        for i, block in enumerate(self.blocks):
            tokens, mask = streams[i % 2]
            kvs.append((block.cross.key_values(tokens), mask))
        state_tok = self.state_adaptor(self._unified(cond["state"], self.state_idx))
        freq = self.freq_embed(cond["control_frequency"]).to(state_tok.dtype)
        return {"kvs": kvs, "state_tokens": state_tok, "freq_token": freq[:, None]}

    def forward(self, x: torch.Tensor, t: torch.Tensor, ctx: dict) -> torch.Tensor:
        horizon = x.shape[1]
        act = self.action_adaptor(self._unified(x, self.action_idx))  # (B, H, d)
        t_tok = self.t_embed(t).to(act.dtype)[:, None]
        h = torch.cat([t_tok, ctx["freq_token"], ctx["state_tokens"], act], dim=1)
        h = h + self.pos[:, : h.shape[1]]
        for block, (kv, mask) in zip(self.blocks, ctx["kvs"]):
            h = block(h, kv, mask)
        out = self.decoder(self.final_norm(h[:, -horizon:]))  # (B, H, 128)
        return out[..., self.action_idx]
