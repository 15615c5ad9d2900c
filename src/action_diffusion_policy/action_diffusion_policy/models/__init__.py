"""Backbones and observation encoders. Every backbone has the same interface::

    ctx = backbone.prepare_condition(cond)     # once per chunk (obs features, cached K/V)
    out = backbone(noisy_actions, t, ctx)      # (B, H, k) -> (B, H, k), once per step
"""

from action_diffusion_policy.models.dit import DiT
from action_diffusion_policy.models.rdt import RDT
from action_diffusion_policy.models.unet1d import ConditionalUnet1D

__all__ = ["RDT", "ConditionalUnet1D", "DiT"]
