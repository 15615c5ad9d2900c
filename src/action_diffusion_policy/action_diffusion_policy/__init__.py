"""Diffusion and flow-matching action-chunk policies, training, datasets and bag tools, plus
the policy node, the chunk executor and the recorder (only ``nodes/`` imports rclpy)."""

# Lazy re-exports of the policy API, so importing a light submodule (runtime, bag tools) does not
# pull in torch.
_EXPORTS = {
    "Observation": "action_diffusion_policy.types",
    "PolicySpec": "action_diffusion_policy.types",
    "PolicyConfig": "action_diffusion_policy.config",
    "ActionChunkPolicy": "action_diffusion_policy.policy",
    "DiffusionPolicy": "action_diffusion_policy.policy",
    "load_policy": "action_diffusion_policy.checkpoint",
    "save_checkpoint": "action_diffusion_policy.checkpoint",
    "CheckpointError": "action_diffusion_policy.checkpoint",
}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'action_diffusion_policy' has no attribute {name!r}")
