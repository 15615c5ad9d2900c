"""Policy and backbone configuration: validated dataclasses and named size presets.

A policy is described by one ``PolicyConfig``. The backbone's size comes from a named preset
(``UNET_PRESETS``, ``DIT_PRESETS``, ``RDT_PRESETS``, in the style of DiT's ``DiT_models``),
optionally overridden field by field with ``backbone_overrides``.

Presets: ``tiny`` (tests, seconds on a CPU), ``small`` (the default; p50 <= 100 ms per chunk with
10 steps, 2 cameras, horizon 64 on a 2-core CPU is the target), and the published sizes:
U-Net ``reference`` (down_dims 256/512/1024, Chi et al. 2023), ``rdt-170m`` (hidden 1024, depth
14) and ``rdt-1b`` (hidden 2048, depth 28, 32 heads).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from unified_action_space.layout import NUM_SLOTS  # defined once, with the unified layout

BACKBONES = ("unet", "dit", "rdt")
HEADS = ("ddpm", "flow", "regression")
PREDICTION_TYPES = ("epsilon", "sample")
DDPM_SAMPLERS = ("ddpm", "ddim", "dpmsolver++")
FLOW_SAMPLERS = ("euler",)
REGRESSION_SAMPLERS = ("none",)
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
VISION_ENCODERS = ("resnet18", "convnet", "siglip")


class ConfigError(ValueError):
    """A configuration field holds a value that is not allowed."""


def _check(cond: bool, name: str, value, allowed: str) -> None:
    if not cond:
        raise ConfigError(f"{name}={value!r} is not allowed; expected {allowed}")


# --------------------------------------------------------------------------------------------
# Backbone configs


@dataclass(frozen=True)
class UNetConfig:
    """Conditional 1D temporal U-Net (Chi et al. 2023)."""

    down_dims: tuple[int, ...] = (64, 128, 256)  # channels per resolution level
    kernel_size: int = 5  # temporal conv kernel
    n_groups: int = 8  # GroupNorm groups
    step_embed_dim: int = 128  # diffusion-step embedding width

    def __post_init__(self):
        object.__setattr__(self, "down_dims", tuple(int(d) for d in self.down_dims))
        _check(len(self.down_dims) >= 1, "unet.down_dims", self.down_dims, "at least one level")
        for d in self.down_dims:
            _check(d % self.n_groups == 0, "unet.down_dims", self.down_dims,
                   f"multiples of n_groups={self.n_groups}")
        _check(self.kernel_size % 2 == 1, "unet.kernel_size", self.kernel_size, "an odd number")


@dataclass(frozen=True)
class TransformerConfig:
    """DiT / RDT transformer size."""

    hidden: int = 256  # token width
    depth: int = 6  # number of blocks
    heads: int = 8  # attention heads (hidden must divide by heads)
    mlp_ratio: float = 4.0  # MLP width / hidden
    dropout: float = 0.0  # attention / MLP dropout during training

    def __post_init__(self):
        _check(self.hidden > 0 and self.hidden % self.heads == 0, "transformer.hidden",
               self.hidden, f"a positive multiple of heads={self.heads}")
        _check(self.depth >= 1, "transformer.depth", self.depth, ">= 1")
        _check(0.0 <= self.dropout < 1.0, "transformer.dropout", self.dropout, "in [0, 1)")


UNET_PRESETS: dict[str, UNetConfig] = {
    "tiny": UNetConfig(down_dims=(32, 64), kernel_size=3, n_groups=8, step_embed_dim=32),
    "small": UNetConfig(down_dims=(64, 128, 256), kernel_size=3, n_groups=8, step_embed_dim=64),
    "reference": UNetConfig(down_dims=(256, 512, 1024), kernel_size=5, n_groups=8,
                            step_embed_dim=256),
}
DIT_PRESETS: dict[str, TransformerConfig] = {
    "tiny": TransformerConfig(hidden=64, depth=2, heads=4),
    "small": TransformerConfig(hidden=192, depth=4, heads=6),
    "base": TransformerConfig(hidden=768, depth=12, heads=12),
}
RDT_PRESETS: dict[str, TransformerConfig] = {
    "tiny": TransformerConfig(hidden=64, depth=2, heads=4),
    "small": TransformerConfig(hidden=192, depth=4, heads=6),
    "rdt-170m": TransformerConfig(hidden=1024, depth=14, heads=16),
    "rdt-1b": TransformerConfig(hidden=2048, depth=28, heads=32),
}
PRESETS = {"unet": UNET_PRESETS, "dit": DIT_PRESETS, "rdt": RDT_PRESETS}


# --------------------------------------------------------------------------------------------
# Policy config


@dataclass
class PolicyConfig:
    """Everything needed to build a policy; stored in the checkpoint's config.json."""

    # model family
    backbone: str = "unet"  # 'unet' | 'dit' | 'rdt'
    size: str = "small"  # preset name in PRESETS[backbone]
    backbone_overrides: dict = field(default_factory=dict)  # preset fields to override
    head: str = "ddpm"  # 'ddpm' (diffusion) | 'flow' (flow matching) | 'regression' (MSE baseline)
    # diffusion head
    prediction_type: str = "epsilon"  # 'epsilon' (predict noise) | 'sample' (predict clean chunk)
    # ddpm: 'ddpm' | 'ddim' | 'dpmsolver++'; flow: 'euler'; regression: 'none'
    sampler: str = "ddim"
    num_train_timesteps: int = 100  # diffusion steps K during training
    num_inference_steps: int = 10  # denoising / integration steps at inference
    beta_schedule: str = "squaredcos_cap_v2"  # diffusers beta schedule name
    clip_sample: bool = True  # clip predicted clean chunk to [-1, 1] (ddpm/ddim only)
    # flow head (time convention: t=1 is pure noise, t=0 is data; see heads.FlowMatchingHead)
    flow_beta_alpha: float = 1.5  # tau ~ Beta(alpha, beta) on the noisy end, as in pi0
    flow_beta_beta: float = 1.0
    flow_t_min: float = 0.001  # smallest training time (pi0's s = 0.999)
    # chunk / observation shape
    horizon: int = 16  # actions per chunk H
    n_obs_steps: int = 2  # observation history T
    camera_names: list[str] = field(default_factory=list)  # empty: low-dim policy
    image_size: tuple[int, int] | None = None  # (H, W) of every camera, required with cameras
    state_slots: list[int] = field(default_factory=list)  # unified slots of the state input
    action_slots: list[int] = field(default_factory=list)  # unified slots of the chunk columns
    env_state_dim: int = 0  # privileged object pose width (0: unused)
    lang_dim: int = 0  # language embedding width E (0: no language input)
    control_frequency: float = 50.0  # Hz of the data the policy was trained on
    embodiments: list[str] = field(default_factory=list)  # robots of the training data
    # encoders
    # 'resnet18' (GroupNorm, from scratch) | 'convnet' (small GroupNorm CNN at 1/4 resolution,
    # from scratch; the CPU recipe) | 'siglip' (frozen)
    vision_encoder: str = "resnet18"
    vision_encoder_path: str | None = None  # SigLIP: local dir or HF cache name
    vision_encoder_hf_config: dict | None = None  # filled at build time; lets load skip the dir
    num_keypoints: int = 32  # spatial-softmax keypoints per camera (resnet18)
    image_feature_dim: int = 64  # per-camera feature width fed to the backbone
    crop_ratio: float = 1.0  # random crop during training (1.0: none), centre crop at inference
    conv_channels: tuple[int, ...] = (32, 64, 128)  # convnet: channels per stage
    # training-time regularisers against a policy that reads only its proprioception
    state_noise_std: float = 0.0  # Gaussian noise on the normalized state ([-1, 1] units)
    state_dropout: float = 0.0  # probability of zeroing a sample's whole state (RDT's masking)
    noise_draws: int = 1  # noise/time draws per encoded observation (the encoder runs once)
    # training loss
    mask_padding_loss: bool = False  # ignore padded actions past the episode end in the loss

    def __post_init__(self):
        _check(self.backbone in BACKBONES, "backbone", self.backbone, f"one of {BACKBONES}")
        presets = PRESETS[self.backbone]
        _check(self.size in presets, "size", self.size,
               f"a {self.backbone} preset: {sorted(presets)}")
        _check(self.head in HEADS, "head", self.head, f"one of {HEADS}")
        _check(self.prediction_type in PREDICTION_TYPES, "prediction_type",
               self.prediction_type, f"one of {PREDICTION_TYPES}")
        samplers = {"ddpm": DDPM_SAMPLERS, "flow": FLOW_SAMPLERS,
                    "regression": REGRESSION_SAMPLERS}[self.head]
        _check(self.sampler in samplers, "sampler", self.sampler,
               f"one of {samplers} for head={self.head!r}")
        _check(self.beta_schedule in BETA_SCHEDULES, "beta_schedule", self.beta_schedule,
               f"one of {BETA_SCHEDULES}")
        _check(self.num_train_timesteps >= 1, "num_train_timesteps", self.num_train_timesteps,
               ">= 1")
        _check(1 <= self.num_inference_steps <= self.num_train_timesteps or self.head != "ddpm",
               "num_inference_steps", self.num_inference_steps,
               f"in [1, num_train_timesteps={self.num_train_timesteps}]")
        _check(self.num_inference_steps >= 1, "num_inference_steps", self.num_inference_steps,
               ">= 1")
        _check(self.flow_beta_alpha > 0 and self.flow_beta_beta > 0, "flow_beta_alpha/beta",
               (self.flow_beta_alpha, self.flow_beta_beta), "both > 0")
        _check(0.0 <= self.flow_t_min < 1.0, "flow_t_min", self.flow_t_min, "in [0, 1)")
        _check(self.horizon >= 1, "horizon", self.horizon, ">= 1")
        _check(self.n_obs_steps >= 1, "n_obs_steps", self.n_obs_steps, ">= 1")
        self.camera_names = list(self.camera_names)
        _check(len(set(self.camera_names)) == len(self.camera_names), "camera_names",
               self.camera_names, "unique names")
        if self.image_size is not None:
            self.image_size = tuple(int(v) for v in self.image_size)
            _check(len(self.image_size) == 2 and min(self.image_size) >= 8, "image_size",
                   self.image_size, "(H, W) with H, W >= 8")
        _check(not self.camera_names or self.image_size is not None, "image_size",
               self.image_size, "(H, W) when camera_names is not empty")
        for name in ("state_slots", "action_slots"):
            slots = [int(s) for s in getattr(self, name)]
            setattr(self, name, slots)
            _check(all(0 <= s < NUM_SLOTS for s in slots) and len(set(slots)) == len(slots),
                   name, slots, f"unique slot indices in [0, {NUM_SLOTS})")
        _check(len(self.action_slots) >= 1, "action_slots", self.action_slots,
               "at least one unified slot")
        _check(self.env_state_dim >= 0, "env_state_dim", self.env_state_dim, ">= 0")
        _check(self.lang_dim >= 0, "lang_dim", self.lang_dim, ">= 0")
        _check(self.control_frequency > 0, "control_frequency", self.control_frequency, "> 0")
        _check(self.vision_encoder in VISION_ENCODERS, "vision_encoder", self.vision_encoder,
               f"one of {VISION_ENCODERS}")
        _check(self.vision_encoder != "siglip" or self.vision_encoder_path
               or self.vision_encoder_hf_config, "vision_encoder_path",
               self.vision_encoder_path, "a local SigLIP directory when vision_encoder='siglip'")
        _check(0.5 <= self.crop_ratio <= 1.0, "crop_ratio", self.crop_ratio, "in [0.5, 1]")
        self.conv_channels = tuple(int(c) for c in self.conv_channels)
        _check(len(self.conv_channels) >= 2 and min(self.conv_channels) >= 16
               and all(c % 16 == 0 for c in self.conv_channels), "conv_channels",
               self.conv_channels, "at least 2 stages, each a multiple of 16 channels")
        _check(self.state_noise_std >= 0.0, "state_noise_std", self.state_noise_std, ">= 0")
        _check(0.0 <= self.state_dropout < 1.0, "state_dropout", self.state_dropout, "in [0, 1)")
        _check(self.noise_draws >= 1, "noise_draws", self.noise_draws, ">= 1")
        _check(self.num_keypoints >= 1 and self.image_feature_dim >= 1, "num_keypoints",
               (self.num_keypoints, self.image_feature_dim), "both >= 1")
        cfg = self.backbone_config  # validates overrides
        if self.backbone == "unet":
            factor = 2 ** (len(cfg.down_dims) - 1)
            _check(self.horizon % factor == 0, "horizon", self.horizon,
                   f"a multiple of {factor} for a U-Net with {len(cfg.down_dims)} levels")

    @property
    def backbone_config(self) -> UNetConfig | TransformerConfig:
        base = PRESETS[self.backbone][self.size]
        if not self.backbone_overrides:
            return base
        known = {f.name for f in fields(base)}
        unknown = sorted(set(self.backbone_overrides) - known)
        _check(not unknown, "backbone_overrides", unknown, f"keys among {sorted(known)}")
        return replace(base, **self.backbone_overrides)

    @property
    def action_dim(self) -> int:
        return len(self.action_slots)

    def to_json(self) -> dict:
        d = asdict(self)
        d["image_size"] = list(self.image_size) if self.image_size else None
        d["conv_channels"] = list(self.conv_channels)
        return d

    @classmethod
    def from_json(cls, d: dict) -> PolicyConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"policy config keys {unknown} are unknown; allowed: {sorted(known)}")
        return cls(**d)
