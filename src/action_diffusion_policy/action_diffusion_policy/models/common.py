"""Small building blocks shared by the backbones."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) float times -> (B, dim) [cos | sin] features at geometric frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class MatmulConv1d(nn.Conv1d):
    """nn.Conv1d computed as one matmul over unfolded windows (im2col); same parameters, so
    the state dict does not change.

    At batch 1 a chunk's convolutions are thin (16-64 time steps against up to 5120 inputs):
    oneDNN's bf16 convolution reached about 130-230 GFLOP/s on them where a matmul of the same
    shape reached 290-470 (benchmarks/policy_bench.py), and a linear layer is what
    torch.compile pre-packs for the CPU's matrix units.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (k,), (stride,), (pad,) = self.kernel_size, self.stride, self.padding
        weight = self.weight.reshape(self.out_channels, -1)  # (out, in * k), in-major
        if k == 1 and stride == 1:
            cols = x.transpose(1, 2)
        else:
            cols = F.pad(x, (pad, pad)).unfold(2, k, stride).permute(0, 2, 1, 3)
            cols = cols.reshape(cols.shape[0], cols.shape[1], -1)  # (B, T', in * k)
        return F.linear(cols, weight, self.bias).transpose(1, 2)


def use_matmul_convs(module: nn.Module, enabled: bool = True) -> int:
    """Switch every plain nn.Conv1d in ``module`` to MatmulConv1d (or back); returns how many.

    Only convolutions MatmulConv1d computes exactly alike are switched: one group, no
    dilation, zero padding. (The transposed upsampling convolutions stay: as a matmul of
    their four taps they measured slower, compiled or not.)"""
    src, dst = (nn.Conv1d, MatmulConv1d) if enabled else (MatmulConv1d, nn.Conv1d)
    n = 0
    for m in module.modules():
        if type(m) is src and m.groups == 1 and m.dilation == (1,) \
                and m.padding_mode == "zeros" and isinstance(m.padding, tuple):
            m.__class__ = dst
            n += 1
    return n


class TimestepEmbedder(nn.Module):
    """Sinusoidal features followed by an MLP (used for diffusion time and control frequency)."""

    def __init__(self, hidden: int, freq_dim: int = 256, act: type[nn.Module] = nn.SiLU):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), act(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = sinusoidal_embedding(t, self.freq_dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps).to(x.dtype)
        return y * self.weight if self.weight is not None else y


class Attention(nn.Module):
    """Multi-head attention; self-attention, or cross-attention with precomputable K/V."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None, qk_norm: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.q_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.dropout = dropout

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, N, hd)

    def key_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project context tokens once; reuse the result at every denoising step."""
        k, v = self.kv(context).chunk(2, dim=-1)
        return self.k_norm(self._split(k)), self._split(v)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                kv_mask: torch.Tensor | None = None) -> torch.Tensor:
        q = self.q_norm(self._split(self.q(x)))
        k, v = kv if kv is not None else self.key_values(x)
        mask = None if kv_mask is None else kv_mask[:, None, None, :]
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        b, _, n, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, n, -1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, out or dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))
