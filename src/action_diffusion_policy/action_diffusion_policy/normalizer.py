"""Min-max normalization to [-1, 1] per column, as an nn.Module so the stats ride in the weights."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# Columns whose range is below this are constant in the data: they map to 0, and back to the
# recorded value, instead of dividing by ~0.
MIN_RANGE = 1e-4


class Normalizer(nn.Module):
    """Holds (min, max) per column for each key ('action', 'state', 'env_state')."""

    def __init__(self, dims: dict[str, int]):
        super().__init__()
        self.keys = sorted(k for k, d in dims.items() if d > 0)
        for k in self.keys:
            self.register_buffer(f"{k}_min", -torch.ones(dims[k]))
            self.register_buffer(f"{k}_max", torch.ones(dims[k]))

    def set_stats(self, key: str, lo, hi) -> None:
        lo = torch.as_tensor(np.asarray(lo, dtype=np.float32))
        hi = torch.as_tensor(np.asarray(hi, dtype=np.float32))
        buf = getattr(self, f"{key}_min")
        if lo.shape != buf.shape or hi.shape != buf.shape:
            raise ValueError(f"normalizer stats for {key!r}: got {tuple(lo.shape)}/"
                             f"{tuple(hi.shape)}, expected {tuple(buf.shape)}")
        if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            raise ValueError(f"normalizer stats for {key!r} hold NaN or inf")
        buf.copy_(lo)
        getattr(self, f"{key}_max").copy_(hi)

    def _scale_offset(self, key: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lo, hi = getattr(self, f"{key}_min"), getattr(self, f"{key}_max")
        span = hi - lo
        const = span < MIN_RANGE
        scale = torch.where(const, torch.ones_like(span), 2.0 / span.clamp_min(MIN_RANGE))
        return scale, (hi + lo) / 2, const

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        scale, centre, _ = self._scale_offset(key)
        return (x - centre) * scale

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """Inverse of ``normalize``; constant columns return their recorded value."""
        scale, centre, const = self._scale_offset(key)
        return torch.where(const, centre, x / scale + centre)

    def stats(self) -> dict[str, dict[str, list[float]]]:
        return {k: {"min": getattr(self, f"{k}_min").tolist(),
                    "max": getattr(self, f"{k}_max").tolist()} for k in self.keys}
