"""Policy checkpoints: ``model.safetensors`` (EMA weights) + ``config.json``. Never pickled.

``config.json``::

    {"model_type": "action_diffusion_policy", "format_version": 1,
     "policy_config": {...PolicyConfig...}, "spec": {...PolicySpec...},
     "normalization": {"action": {"min": [...], "max": [...]}, ...},
     "embodiments": [...], "checkpoint_id": "<sha256 of weights + config, 16 hex>",
     "extra": {...}}

The normalization statistics are also buffers in the weights (the copy in the JSON is for
people and tools). The directory is written next to its destination and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from action_diffusion_policy.config import ConfigError, PolicyConfig
from action_diffusion_policy.policy import ActionChunkPolicy

MODEL_TYPE = "action_diffusion_policy"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(ValueError):
    """A checkpoint directory is missing, corrupt or of another model type."""


def _content_hash(weights: Path, config: dict) -> str:
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    body = {k: v for k, v in config.items() if k != "checkpoint_id"}
    if isinstance(body.get("spec"), dict):  # the id is also copied into the spec
        body["spec"] = {**body["spec"], "checkpoint_id": ""}
    h.update(json.dumps(body, sort_keys=True).encode())
    return h.hexdigest()[:16]


def state_dict_for_save(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Float32, contiguous, unshared CPU copies (safetensors refuses shared storage)."""
    out = {}
    for k, v in module.state_dict().items():
        v = v.detach().cpu()
        out[k] = (v.float() if v.is_floating_point() else v).contiguous().clone()
    return out


def save_checkpoint(policy: ActionChunkPolicy, path: str | os.PathLike,
                    extra: dict | None = None) -> Path:
    """Write ``policy`` (pass the EMA copy when training) to directory ``path``; returns it.

    Sets and returns ``policy.checkpoint_id`` in the JSON.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_file(state_dict_for_save(policy), str(tmp / WEIGHTS_FILE),
                  metadata={"model_type": MODEL_TYPE})
        cfg = policy.config
        config = {
            "model_type": MODEL_TYPE,
            "format_version": FORMAT_VERSION,
            "policy_config": cfg.to_json(),
            "spec": policy.spec.to_json(),
            "normalization": policy.normalizer.stats(),
            "embodiments": list(cfg.embodiments),
            "extra": extra or {},
        }
        ckpt_id = _content_hash(tmp / WEIGHTS_FILE, config)
        config["checkpoint_id"] = ckpt_id
        config["spec"]["checkpoint_id"] = ckpt_id
        with open(tmp / CONFIG_FILE, "w") as f:
            json.dump(config, f, indent=1)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    policy.checkpoint_id = ckpt_id
    return path


def read_checkpoint_config(path: str | os.PathLike) -> dict:
    """Read and check ``config.json`` of a checkpoint directory (no weights)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a directory")
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path} is missing; not a policy checkpoint directory")
    try:
        with open(cfg_path) as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{cfg_path} is corrupt (not JSON): {exc}") from exc
    if not isinstance(config, dict) or config.get("model_type") != MODEL_TYPE:
        got = config.get("model_type") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(
            f"{cfg_path}: model_type is {got!r}, expected {MODEL_TYPE!r}; "
            "this is another kind of model")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path}: format_version {config.get('format_version')!r}, "
                              f"this code reads {FORMAT_VERSION}")
    return config


def load_policy(path: str | os.PathLike, device: str | torch.device = "cpu",
                verify_hash: bool = True) -> ActionChunkPolicy:
    """Build the policy stored in checkpoint directory ``path``, in eval mode on ``device``."""
    path = Path(path)
    config = read_checkpoint_config(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing; the checkpoint is incomplete")
    if verify_hash and _content_hash(weights, config) != config.get("checkpoint_id"):
        raise CheckpointError(
            f"{path}: content hash does not match checkpoint_id {config.get('checkpoint_id')!r};"
            " the weights or config.json were modified or are corrupt")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights} is corrupt: {exc}") from exc
    try:
        policy_cfg = PolicyConfig.from_json(config["policy_config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: bad policy_config: {exc}") from exc
    policy = ActionChunkPolicy(policy_cfg)
    try:
        policy.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights} does not fit the model in config.json: {exc}") from exc
    policy.checkpoint_id = config["checkpoint_id"]
    return policy.to(device).eval()
