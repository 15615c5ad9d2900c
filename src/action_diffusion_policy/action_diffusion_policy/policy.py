"""Action-chunk policy: observation encoder + backbone + generative head + normalizer.

Interface (shared with the runtime nodes and the evaluators)::

    policy.reset()
    chunk = policy.predict_chunk(obs, noise=None)   # (H, k) float32, spec.action_slots order
    loss = policy.compute_loss(batch)               # torch scalar

The observation is encoded once per chunk; the backbone then runs once per denoising step on
the cached condition (transformers cache the cross-attention keys/values).
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from action_diffusion_policy.config import NUM_SLOTS, PolicyConfig
from action_diffusion_policy.heads import RTC_JACOBIANS, Guidance, make_head, rtc_weights
from action_diffusion_policy.models.common import use_matmul_convs
from action_diffusion_policy.models.dit import DiT
from action_diffusion_policy.models.encoders import (
    ConvImageEncoder,
    ResNetImageEncoder,
    SiglipImageEncoder,
)
from action_diffusion_policy.models.rdt import RDT
from action_diffusion_policy.models.unet1d import ConditionalUnet1D
from action_diffusion_policy.normalizer import Normalizer
from action_diffusion_policy.types import Observation, PolicySpec


class _TracedStep(nn.Module):
    """backbone(x, t, ctx) with the context flattened to tensors, so torch.jit.trace can record
    one denoising step; non-tensor leaves (None masks) are baked in."""

    def __init__(self, backbone: nn.Module, ctx: dict):
        super().__init__()
        self.backbone = backbone
        leaves, self.spec = tree_flatten(ctx)
        self.tensor_pos = [i for i, v in enumerate(leaves) if isinstance(v, torch.Tensor)]
        self.consts = [None if isinstance(v, torch.Tensor) else v for v in leaves]

    @staticmethod
    def tensors(ctx: dict) -> list[torch.Tensor]:
        return [v for v in tree_flatten(ctx)[0] if isinstance(v, torch.Tensor)]

    def forward(self, x: torch.Tensor, t: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
        leaves = list(self.consts)
        for pos, v in zip(self.tensor_pos, tensors):
            leaves[pos] = v
        return self.backbone(x, t, tree_unflatten(leaves, self.spec))


def compiler_missing() -> str:
    """Why torch.compile cannot build CPU kernels here ("" when it can)."""
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return ("torch.compile on CPU needs a C++ compiler and none (g++, c++, clang++) is on "
                "PATH; install g++ or use an uncompiled inference path")
    return ""


def crop_size(image_size: tuple[int, int], crop_ratio: float) -> tuple[int, int]:
    """(H, W) of the policy's crop of an ``image_size`` frame (centred at inference)."""
    h, w = image_size
    return max(8, round(h * crop_ratio)), max(8, round(w * crop_ratio))


def _crop_size(cfg: PolicyConfig) -> tuple[int, int] | None:
    return None if cfg.image_size is None else crop_size(cfg.image_size, cfg.crop_ratio)


class ActionChunkPolicy(nn.Module):
    """Diffusion / flow-matching action-chunk policy with a U-Net, DiT or RDT backbone."""

    def __init__(self, config: PolicyConfig, stats: dict | None = None):
        super().__init__()
        self.config = cfg = config
        self.checkpoint_id = ""
        self.n_state = len(cfg.state_slots)
        self.register_buffer("state_idx", torch.tensor(cfg.state_slots, dtype=torch.long),
                             persistent=False)
        self.register_buffer("action_idx", torch.tensor(cfg.action_slots, dtype=torch.long),
                             persistent=False)
        self.normalizer = Normalizer(
            {"action": cfg.action_dim, "state": self.n_state, "env_state": cfg.env_state_dim})
        if stats:
            self.set_dataset_stats(stats)

        n_cam, n_obs = len(cfg.camera_names), cfg.n_obs_steps
        self.image_encoder: nn.Module | None = None
        num_img_tokens, token_dim, feat_dim = 0, 1, 0
        if n_cam:
            if cfg.vision_encoder == "resnet18":
                self.image_encoder = ResNetImageEncoder(cfg.num_keypoints, cfg.image_feature_dim)
            elif cfg.vision_encoder == "convnet":
                self.image_encoder = ConvImageEncoder(_crop_size(cfg), cfg.conv_channels,
                                                      cfg.num_keypoints, cfg.image_feature_dim)
            else:
                self.image_encoder = SiglipImageEncoder(
                    cfg.vision_encoder_hf_config or {}, cfg.image_feature_dim,
                    weights_dir=None if cfg.vision_encoder_hf_config else cfg.vision_encoder_path)
                cfg.vision_encoder_hf_config = self.image_encoder.hf_config
            feat_dim = cfg.image_feature_dim
            with torch.no_grad():  # token count at this image size
                _, tok = self.image_encoder(torch.zeros(1, 3, *_crop_size(cfg)))
            num_img_tokens = n_cam * n_obs * tok.shape[1]
            token_dim = tok.shape[2]
        self.lang_pool = nn.Linear(cfg.lang_dim, cfg.image_feature_dim) if cfg.lang_dim else None
        lowdim = self.n_state + cfg.env_state_dim
        global_dim = n_obs * (n_cam * feat_dim + lowdim)
        global_dim += cfg.image_feature_dim if cfg.lang_dim else 0
        global_dim = max(global_dim, 1)
        self.global_dim = global_dim

        bcfg = cfg.backbone_config
        if cfg.backbone == "unet":
            self.backbone = ConditionalUnet1D(cfg.action_dim, global_dim, bcfg)
        elif cfg.backbone == "dit":
            self.backbone = DiT(cfg.action_dim, cfg.horizon, global_dim, bcfg)
        else:
            self.backbone = RDT(cfg.action_slots, cfg.state_slots, cfg.horizon, n_obs, lowdim,
                                token_dim, num_img_tokens, cfg.lang_dim, bcfg)
        self.head = make_head(cfg)
        self.inference_dtype = torch.float32
        self.image_memory_format = torch.contiguous_format
        self.jit = False
        self._traced: dict = {}
        self.compiled = False
        self.compile_autotune = False
        self._compiled: dict = {}  # "backbone" / "encoder" -> torch.compile'd module
        self.matmul_convs = False

    # ----------------------------------------------------------------------------------------
    # bookkeeping

    @property
    def device(self) -> torch.device:
        return self.normalizer.action_min.device

    @property
    def spec(self) -> PolicySpec:
        cfg = self.config
        return PolicySpec(
            camera_names=list(cfg.camera_names), image_size=cfg.image_size,
            n_obs_steps=cfg.n_obs_steps, horizon=cfg.horizon,
            action_slots=list(cfg.action_slots), state_slots=list(cfg.state_slots),
            env_state_dim=cfg.env_state_dim, control_frequency=cfg.control_frequency,
            embodiments=list(cfg.embodiments), checkpoint_id=self.checkpoint_id)

    def set_dataset_stats(self, stats: dict) -> None:
        """Take min/max from a dataset's ``meta.stats`` (128-wide state/action columns)."""
        cfg = self.config
        for key, slots in (("action", cfg.action_slots), ("state", cfg.state_slots)):
            if slots:
                lo, hi = np.asarray(stats[key]["min"]), np.asarray(stats[key]["max"])
                if lo.shape[-1] == NUM_SLOTS:
                    lo, hi = lo[slots], hi[slots]
                self.normalizer.set_stats(key, lo, hi)
        if cfg.env_state_dim:
            self.normalizer.set_stats("env_state", stats["env_state"]["min"],
                                      stats["env_state"]["max"])

    def reset(self) -> None:
        """Start of an episode. The policy keeps no state between chunks; kept for the API."""

    def to_inference_dtype(self, dtype: torch.dtype = torch.bfloat16,
                           channels_last: bool = False) -> ActionChunkPolicy:
        """Run encoders and backbone in ``dtype`` (normalizer and sampler math stay float32).

        bfloat16 pays off only on CPUs with native bf16 matrix units (AVX512-BF16/AMX) and on
        GPUs; elsewhere it is emulated and slower. ``channels_last`` switches the image encoder's
        memory layout (often faster for larger images on CPU).
        """
        for m in (self.image_encoder, self.backbone, self.lang_pool):
            if m is not None:
                m.to(dtype)
        self.inference_dtype = dtype
        self._traced.clear()
        self._compiled.clear()
        if self.image_encoder is not None:
            self.image_memory_format = (torch.channels_last if channels_last
                                        else torch.contiguous_format)
            self.image_encoder.to(memory_format=self.image_memory_format)
        return self

    def enable_jit(self, enabled: bool = True) -> ActionChunkPolicy:
        """Trace the denoising step with torch.jit for inference (about 2x fewer CPU overheads
        per step for small models; traced once per input-shape signature, checked against eager
        on first use). Training never uses the traced step."""
        self.jit = enabled
        self._traced.clear()
        return self

    def enable_compile(self, enabled: bool = True, autotune: bool = False) -> ActionChunkPolicy:
        """Run the encoder and the denoising step through torch.compile (Inductor) with weight
        freezing, for inference: weights become constants pre-packed for the CPU's matrix units
        and GroupNorm/activations fuse. ``autotune`` also times Inductor's own GEMM kernels
        (AMX micro-kernels on CPUs that have them) against oneDNN's per layer shape. The first
        chunk compiles (tens of seconds, more with autotune; Inductor caches on disk); weights
        are read at that moment, so call this again after changing them. Needs a C++ compiler
        on CPU. Training never uses the compiled modules."""
        if enabled and self.device.type == "cpu" and compiler_missing():
            raise RuntimeError(compiler_missing())
        if enabled:
            import torch._inductor.config as inductor_config

            # Freezing applies only to graphs compiled without gradients (our inference);
            # it is a process-wide switch in Inductor (torch.compile's options do not set it).
            inductor_config.freezing = True
        self.compiled = enabled
        self.compile_autotune = enabled and autotune
        self._compiled.clear()
        return self

    def use_matmul_convs(self, enabled: bool = True) -> ActionChunkPolicy:
        """The backbone's 1D convolutions as matmuls (models.common.MatmulConv1d): faster in
        bf16 at batch 1; the parameters and the state dict are unchanged."""
        use_matmul_convs(self.backbone, enabled)
        self.matmul_convs = enabled
        self._traced.clear()
        self._compiled.clear()
        return self

    def train(self, mode: bool = True) -> ActionChunkPolicy:
        if mode and getattr(self, "_compiled", None):
            self._compiled.clear()  # frozen weights go stale once training changes them
        return super().train(mode)

    def _compiled_module(self, name: str, module: nn.Module) -> nn.Module:
        if not self.compiled or self.training or torch.is_grad_enabled() \
                or torch.is_inference_mode_enabled():
            return module
        if name not in self._compiled:
            mode = "max-autotune-no-cudagraphs" if self.compile_autotune else None
            self._compiled[name] = torch.compile(module, dynamic=False, mode=mode)
        return self._compiled[name]

    def _step_fn(self, ctx: dict, x: torch.Tensor, t: torch.Tensor):
        backbone = self._compiled_module("backbone", self.backbone)
        eager = lambda x, t: backbone(x, t, ctx)  # noqa: E731
        if backbone is not self.backbone:
            return eager
        if not self.jit or self.training or torch.is_grad_enabled():
            return eager
        tensors = _TracedStep.tensors(ctx)
        key = (tuple(x.shape), t.dtype, *((tuple(v.shape), v.dtype) for v in tensors))
        traced = self._traced.get(key)
        if traced is None:
            wrapper = _TracedStep(self.backbone, ctx)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(wrapper, (x, t, *tensors), check_trace=False)
            ok = torch.allclose(traced(x, t, *tensors).float(), eager(x, t).float(),
                                atol=1e-3, rtol=1e-3)
            traced = traced if ok else False  # eager fallback for this signature
            self._traced[key] = traced
        if traced is False:
            return eager
        return lambda x, t: traced(x, t, *tensors)

    # ----------------------------------------------------------------------------------------
    # shared core

    def _images_to_float(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            return images.to(self.inference_dtype if not self.training else torch.float32) / 255.0
        return images.to(self.inference_dtype if not self.training else torch.float32)

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        ch, cw = _crop_size(self.config)
        h, w = x.shape[-2:]
        if (ch, cw) == (h, w):
            return x
        if not self.training:
            top, left = (h - ch) // 2, (w - cw) // 2
            return x[..., top: top + ch, left: left + cw]
        # A shift per image, not per batch: one shared offset is one augmentation per step.
        tops = torch.randint(0, h - ch + 1, (x.shape[0],)).tolist()
        lefts = torch.randint(0, w - cw + 1, (x.shape[0],)).tolist()
        return torch.stack([img[..., t: t + ch, s: s + cw]
                            for img, t, s in zip(x, tops, lefts)])

    def encode_obs(self, images: torch.Tensor | None, state: torch.Tensor,
                   env_state: torch.Tensor | None = None, lang: torch.Tensor | None = None,
                   lang_mask: torch.Tensor | None = None,
                   control_frequency: torch.Tensor | None = None) -> dict:
        """Normalized inputs -> condition dict for ``backbone.prepare_condition``.

        images (B, N, T, 3, H, W) floats in [0, 1]; state (B, T, s); env_state (B, T, D).
        """
        cfg = self.config
        dtype = next(self.backbone.parameters()).dtype
        b, t = state.shape[:2]
        per_step = []
        cond: dict = {}
        if self.image_encoder is not None:
            n = images.shape[1]
            x = self._crop(images.reshape(b * n * t, *images.shape[3:]).to(dtype))
            # Frames arrive HWC-strided; convolutions are ~2x slower on a layout that does not
            # match the weights', so make it explicit.
            x = x.contiguous(memory_format=self.image_memory_format)
            pooled, tokens = self._compiled_module("encoder", self.image_encoder)(x)
            per_step.append(pooled.reshape(b, n, t, -1).permute(0, 2, 1, 3).reshape(b, t, -1))
            cond["img_tokens"] = tokens.reshape(b, -1, tokens.shape[-1])
        lowdim = [state.to(dtype)]
        if cfg.env_state_dim:
            lowdim.append(env_state.to(dtype))
        lowdim = torch.cat(lowdim, dim=-1)
        per_step.append(lowdim)
        glob = torch.cat(per_step, dim=-1).reshape(b, -1)
        if self.lang_pool is not None:
            if lang is None:
                pooled_lang = glob.new_zeros(b, cfg.image_feature_dim)
            else:
                lang = lang.to(dtype)
                w = (torch.ones(lang.shape[:2], dtype=dtype, device=lang.device)
                     if lang_mask is None else lang_mask.to(dtype))
                mean = (lang * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1)
                pooled_lang = self.lang_pool(mean)
            glob = torch.cat([glob, pooled_lang], dim=-1)
        if glob.shape[-1] == 0:
            glob = glob.new_zeros(b, 1)
        if control_frequency is None:
            control_frequency = torch.full((b,), cfg.control_frequency, device=state.device)
        cond.update({"global": glob, "state": state.to(dtype), "lowdim": lowdim, "lang": lang,
                     "lang_mask": None if lang_mask is None else lang_mask.bool(),
                     "control_frequency": control_frequency.float()})
        return cond

    def _prepare_batch(self, batch: dict) -> dict:
        cfg = self.config
        dev = self.device
        state = batch["state"].to(dev).float()
        if state.shape[-1] == NUM_SLOTS:
            state = state[..., self.state_idx]
        state = self.normalizer.normalize("state", state) if self.n_state else state[..., :0]
        if self.training and self.n_state:
            state = self._augment_state(state)
        env = None
        if cfg.env_state_dim:
            env = self.normalizer.normalize("env_state", batch["env_state"].to(dev).float())
        images = None
        if cfg.camera_names:
            images = self._images_to_float(batch["images"].to(dev))
        lang = batch.get("lang_embedding")
        lang_mask = batch.get("lang_mask")
        freq = batch.get("control_frequency")
        if lang is not None:
            lang = lang.to(dev)
        if lang_mask is not None:
            lang_mask = lang_mask.to(dev)
        if freq is not None:
            freq = torch.as_tensor(freq, device=dev).float().reshape(-1)
        return self.encode_obs(images, state, env, lang, lang_mask, freq)

    def _augment_state(self, state: torch.Tensor) -> torch.Tensor:
        """Training only: noise on the normalized state and whole-state dropout, so the
        policy cannot reach a low loss from proprioception alone and has to use its cameras."""
        cfg = self.config
        if cfg.state_noise_std > 0:
            state = state + cfg.state_noise_std * torch.randn_like(state)
        if cfg.state_dropout > 0:
            keep = torch.rand(state.shape[0], *([1] * (state.dim() - 1)),
                              device=state.device) >= cfg.state_dropout
            state = state * keep
        return state

    def compute_loss(self, batch: dict) -> torch.Tensor:
        """Mean denoising (or velocity) loss over a batch from ``ChunkDataset``."""
        action = batch["action"].to(self.device).float()
        if action.shape[-1] == NUM_SLOTS:
            action = action[..., self.action_idx]
        action = self.normalizer.normalize("action", action)
        cond = self._prepare_batch(batch)
        ctx = self.backbone.prepare_condition(cond)
        draws = self.config.noise_draws
        pad = batch.get("action_is_pad")
        if draws > 1:  # the encoder ran once; the backbone sees several noise levels of it
            ctx = tree_map(lambda v: v.repeat_interleave(draws, 0)
                           if isinstance(v, torch.Tensor) else v, ctx)
            action = action.repeat_interleave(draws, 0)
            pad = None if pad is None else pad.repeat_interleave(draws, 0)
        err = self.head.loss(lambda x, t: self.backbone(x.to(cond["global"].dtype), t, ctx),
                             action)
        if self.config.mask_padding_loss and pad is not None:
            keep = (~pad.to(self.device).bool()).float()[..., None]
            return (err * keep).sum() / (keep.sum() * err.shape[-1]).clamp_min(1.0)
        return err.mean()

    def forward(self, batch: dict) -> torch.Tensor:  # for DistributedDataParallel
        return self.compute_loss(batch)

    def sample_normalized(self, batch: dict, noise: torch.Tensor | None = None,
                          guide: Guidance | None = None) -> torch.Tensor:  # fmt: skip
        """Batched sampling: observation tensors -> (B, H, k) chunk in normalized units.

        ``guide`` (real-time chunking) with the ``vjp`` guidance needs gradients through the
        backbone, so that path runs without inference mode and without the traced step."""
        if self.compiled:  # frozen graphs need no_grad (Inductor skips freezing otherwise)
            with torch.no_grad():
                return self._sample(batch, noise, guide)
        if guide is None or guide.jacobian == "identity":  # no gradients needed
            with torch.inference_mode():
                return self._sample(batch, noise, guide)
        with torch.no_grad():
            return self._sample(batch, noise, guide)

    def _sample(self, batch: dict, noise, guide) -> torch.Tensor:
        cond = self._prepare_batch(batch)
        b = cond["global"].shape[0]
        if noise is None:
            noise = torch.randn(b, self.config.horizon, self.config.action_dim,
                                device=self.device)
        noise = noise.to(self.device).float().reshape(b, self.config.horizon, -1)
        ctx = self.backbone.prepare_condition(cond)
        dtype = cond["global"].dtype
        t0 = torch.zeros(b, device=noise.device,
                         dtype=torch.long if self.config.head == "ddpm" else torch.float32)
        if guide is not None and guide.jacobian == "vjp":  # eager: gradients through it
            return self.head.sample(
                lambda x, t: self.backbone(x.to(dtype), t, ctx), noise, guide=guide)
        step = self._step_fn(ctx, noise.to(dtype), t0)
        return self.head.sample(lambda x, t: step(x.to(dtype), t), noise, guide=guide)

    # ----------------------------------------------------------------------------------------
    # single observation (runtime)

    def validate_observation(self, obs: Observation) -> dict:
        """Check ``obs`` against the checkpoint's spec; return a batch of one (torch)."""
        cfg = self.config
        t_need = cfg.n_obs_steps
        if set(obs.images) != set(cfg.camera_names):
            raise ValueError(
                f"images: expected cameras {sorted(cfg.camera_names)} "
                f"({len(cfg.camera_names)}), got {sorted(obs.images)} ({len(obs.images)})")
        frames = []
        for cam in cfg.camera_names:
            img = obs.images[cam]
            h, w = cfg.image_size
            if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
                raise ValueError(f"images[{cam!r}]: expected dtype uint8, got "
                                 f"{getattr(img, 'dtype', type(img).__name__)}")
            if img.ndim != 4 or img.shape[1:] != (h, w, 3) or img.shape[0] < t_need:
                raise ValueError(f"images[{cam!r}]: expected shape ({t_need}, {h}, {w}, 3) "
                                 f"(T, H, W, RGB), got {img.shape}")
            frames.append(img[-t_need:])
        state = np.asarray(obs.state)
        if state.ndim != 2 or state.shape[1] != NUM_SLOTS or state.shape[0] < t_need:
            raise ValueError(f"state: expected shape ({t_need}, {NUM_SLOTS}), got {state.shape}")
        state = state[-t_need:].astype(np.float32)
        if not np.isfinite(state[:, cfg.state_slots]).all():
            bad = sorted({int(s) for s in np.array(cfg.state_slots)[
                ~np.isfinite(state[:, cfg.state_slots]).all(0)]})
            raise ValueError(f"state: expected finite values in slots {cfg.state_slots}, "
                             f"got NaN/inf in slots {bad}")
        mask = np.asarray(obs.state_mask)
        if mask.shape != (NUM_SLOTS,):
            raise ValueError(f"state_mask: expected shape ({NUM_SLOTS},), got {mask.shape}")
        missing = [s for s in cfg.state_slots if not mask[s]]
        if missing:
            raise ValueError(
                f"state_mask: expected the checkpoint's state slots {cfg.state_slots} to be set, "
                f"got slots {missing} unset (mask has {np.flatnonzero(mask).tolist()}); "
                "is this the embodiment the policy was trained on?")
        batch = {"state": torch.from_numpy(state[None])}
        if cfg.env_state_dim:
            env = None if obs.env_state is None else np.asarray(obs.env_state, np.float32)
            if env is None or env.ndim != 2 or env.shape[1] != cfg.env_state_dim \
                    or env.shape[0] < t_need:
                raise ValueError(f"env_state: expected shape ({t_need}, {cfg.env_state_dim}), "
                                 f"got {None if env is None else env.shape}")
            if not np.isfinite(env).all():
                raise ValueError("env_state: expected finite values, got NaN/inf")
            batch["env_state"] = torch.from_numpy(env[None, -t_need:])
        if frames:
            stacked = np.stack(frames)  # (N, T, H, W, 3)
            batch["images"] = torch.from_numpy(stacked).permute(0, 1, 4, 2, 3)[None]
        if cfg.lang_dim and obs.lang_embedding is not None:
            lang = np.asarray(obs.lang_embedding, np.float32)
            if lang.ndim != 2 or lang.shape[1] != cfg.lang_dim or not np.isfinite(lang).all():
                raise ValueError(f"lang_embedding: expected finite (L, {cfg.lang_dim}), "
                                 f"got {lang.shape}")
            batch["lang_embedding"] = torch.from_numpy(lang[None])
        if not np.isfinite(obs.control_frequency) or obs.control_frequency <= 0:
            raise ValueError(f"control_frequency: expected > 0 Hz, got {obs.control_frequency}")
        batch["control_frequency"] = torch.tensor([float(obs.control_frequency)])
        return batch

    def predict_chunk(self, obs: Observation, noise=None, prefix=None, delay: int = 0,
                      execution_horizon: int | None = None,
                      guidance: str = "vjp") -> np.ndarray:  # fmt: skip
        """One observation -> (H, k) float32 chunk in ``spec.action_slots`` order, data units.

        ``noise`` ((H, k) array or tensor, standard normal) makes the result deterministic.

        Real-time chunking (Black et al. 2025): ``prefix`` (P, k), data units, is what the
        robot will execute from this observation's time on (the rest of the chunk being
        executed), and ``delay`` the control steps this inference takes. Its first ``delay``
        rows are frozen and the following ones softly held (``heads.rtc_weights``, with
        ``execution_horizon`` s, default ``delay``), by guided inpainting, so the new chunk
        continues the old one. ``delay`` >= H is no real-time chunking: plain sampling (check
        ``rtc_fallback(delay)``). ``guidance``: ``vjp`` (the paper's, a backward pass per step)
        or ``identity`` (the estimate's Jacobian taken as the identity: no gradients).
        """
        guide = None
        if prefix is not None:
            guide = self._rtc_guidance(prefix, delay, execution_horizon, guidance)
        batch = self.validate_observation(obs)
        if noise is not None:
            noise = torch.as_tensor(np.asarray(noise, dtype=np.float32))
            want = (self.config.horizon, self.config.action_dim)
            if tuple(noise.shape[-2:]) != want or noise.numel() != want[0] * want[1]:
                raise ValueError(f"noise: expected shape {want}, got {tuple(noise.shape)}")
        was_training = self.training
        self.eval()
        try:
            x = self.sample_normalized(batch, None if noise is None else noise[None],
                                       guide=guide)  # fmt: skip
            chunk = self.normalizer.unnormalize("action", x.float())[0]
        finally:
            self.train(was_training)
        return chunk.cpu().numpy().astype(np.float32)

    def rtc_fallback(self, delay: int) -> bool:
        """True when ``delay`` steps leave nothing to inpaint: the chunk would be over before
        it arrives, so ``predict_chunk`` samples without a prefix."""
        return int(delay) >= self.config.horizon

    def _rtc_guidance(self, prefix, delay, execution_horizon,
                      guidance: str = "vjp") -> Guidance | None:  # fmt: skip
        cfg = self.config
        if guidance not in RTC_JACOBIANS:
            raise ValueError(f"guidance: expected one of {RTC_JACOBIANS}, got {guidance!r}")
        prefix = np.asarray(prefix, dtype=np.float32)
        if prefix.ndim != 2 or prefix.shape[1] != cfg.action_dim or prefix.shape[0] < 1:
            raise ValueError(f"prefix: expected shape (P, {cfg.action_dim}) with P >= 1 "
                             f"(the action slots {cfg.action_slots}), got {prefix.shape}")
        if not np.isfinite(prefix).all():
            raise ValueError("prefix: expected finite values, got NaN/inf")
        if int(delay) != delay or delay < 0:
            raise ValueError(f"delay: expected an integer >= 0 control steps, got {delay!r}")
        if self.rtc_fallback(delay) or cfg.head == "regression":
            return None
        h = cfg.horizon
        # s: the steps each chunk runs before the next one replaces it (>= 1); rows past H - s
        # are free, the ones between the delay and H - s held softly.
        s = int(delay if execution_horizon is None else execution_horizon)
        s = min(max(s, 1), h - 1)
        rows = prefix[:h]
        target = np.zeros((h, cfg.action_dim), np.float32)
        target[: len(rows)] = rows
        norm = self.normalizer.normalize("action", torch.from_numpy(target)[None].to(self.device))
        return Guidance(norm.float(), rtc_weights(h, int(delay), s, len(rows)).to(self.device),
                        jacobian=guidance)


DiffusionPolicy = ActionChunkPolicy
