"""Observation encoders.

- ``ResNet18GN``: ResNet-18 with every BatchNorm replaced by GroupNorm (batch statistics are a
  poor fit for small, highly correlated robot batches and EMA weights), trained from scratch,
  followed by ``SpatialSoftmax`` keypoint pooling (Chi et al. 2023).
- ``ConvImageEncoder``: a small GroupNorm CNN that keeps a quarter of the input resolution,
  followed by spatial softmax with a learned temperature. Sized for CPU training: a 3x4 map
  (ResNet-18 at 96x128) puts every keypoint on the same cell and passes almost no gradient,
  so the policy learns to ignore the image; a 22x30 map can place a keypoint on a 4-pixel cube.
- ``SiglipImageEncoder`` / ``T5TextEncoder``: optional frozen encoders through ``transformers``,
  loaded from a local directory or the Hugging Face cache only (never downloaded at run time).

Every image encoder maps (B, 3, H, W) floats in [0, 1] to ``(pooled (B, F), tokens (B, P, C))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _gn(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, channels // 16), channels)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = _gn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = _gn(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _gn(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet18GN(nn.Module):
    """ResNet-18 trunk (no pooling/classifier): (B, 3, H, W) -> (B, 512, H/32, W/32)."""

    out_channels = 512

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), _gn(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))


class SpatialSoftmax(nn.Module):
    """Feature map -> K expected (x, y) keypoint coordinates in [-1, 1]: (B, C, h, w) -> (B, 2K).

    ``learn_temperature`` adds one learned log-temperature per keypoint (Levine et al. 2016
    learn it too); the logits are divided by it, so training can sharpen or soften each map.
    """

    def __init__(self, channels: int, num_keypoints: int, learn_temperature: bool = False):
        super().__init__()
        self.proj = nn.Conv2d(channels, num_keypoints, 1)
        self.log_temperature = (nn.Parameter(torch.zeros(num_keypoints))
                                if learn_temperature else None)

    def attention(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, K, h*w) softmax weights over the cells (float32)."""
        logits = self.proj(feat).flatten(2).float()
        if self.log_temperature is not None:
            logits = logits / self.log_temperature.float().exp()[None, :, None]
        return logits.softmax(-1)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        b, _, h, w = feat.shape
        attn = self.attention(feat).to(feat.dtype)
        ys = torch.linspace(-1, 1, h, device=feat.device, dtype=feat.dtype)
        xs = torch.linspace(-1, 1, w, device=feat.device, dtype=feat.dtype)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)  # (h*w, 2)
        return (attn @ grid).reshape(b, -1)


class ResNetImageEncoder(nn.Module):
    """GroupNorm ResNet-18 + spatial softmax + linear; tokens are the feature-map positions."""

    def __init__(self, num_keypoints: int = 32, feature_dim: int = 64):
        super().__init__()
        self.trunk = ResNet18GN()
        self.pool = SpatialSoftmax(ResNet18GN.out_channels, num_keypoints)
        self.fc = nn.Linear(2 * num_keypoints, feature_dim)
        self.feature_dim = feature_dim
        self.token_dim = ResNet18GN.out_channels

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.trunk(images * 2.0 - 1.0)
        pooled = self.fc(self.pool(feat))
        return pooled, feat.flatten(2).transpose(1, 2)


class SpatialLinear(nn.Module):
    """Feature map -> features by a linear map over every cell: (B, C, h, w) -> (B, out).

    A 1x1 convolution squeezes the channels, then one linear layer reads the whole map, so a
    feature's position reaches the output through that cell's own weights. Unlike a diffuse
    spatial softmax (weight ~1/cells on a small object), the gradient at the object's cell is
    not divided by the number of cells.
    """

    def __init__(self, channels: int, cells: int, squeeze: int, out: int):
        super().__init__()
        self.squeeze = nn.Conv2d(channels, squeeze, 1)
        self.fc = nn.Linear(squeeze * cells, out)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.squeeze(feat)).flatten(1))


class ConvImageEncoder(nn.Module):
    """GroupNorm CNN at 1/4 resolution; pooled features = spatial-softmax keypoints (learned
    temperature) and a linear read-out of the whole map, projected to ``feature_dim``.

    (B, 3, H, W) in [0, 1] -> pooled (B, feature_dim), tokens (B, H/4 * W/4, C). Each stage is
    two 3x3 convolutions, the first of stages 1 and 2 with stride 2; later stages keep the
    resolution and widen the receptive field with dilation, so positions stay precise.
    ``input_size`` (H, W) fixes the map size the linear read-out is built for.
    """

    def __init__(self, input_size: tuple[int, int], channels: tuple[int, ...] = (32, 64, 128),
                 num_keypoints: int = 32, feature_dim: int = 64, squeeze: int = 8):
        super().__init__()
        layers, cin = [], 3
        for i, cout in enumerate(channels):
            stride = 2 if i < 2 else 1
            dilation = 1 if i < 2 else 2 ** (i - 1)
            layers += [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), _gn(cout), nn.ReLU(),
                       nn.Conv2d(cout, cout, 3, 1, dilation, dilation=dilation, bias=False),
                       _gn(cout), nn.ReLU()]
            cin = cout
        self.trunk = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        h, w = input_size
        for _ in range(2):  # two stride-2 convolutions with padding 1
            h, w = (h + 1) // 2, (w + 1) // 2
        self.pool = SpatialSoftmax(cin, num_keypoints, learn_temperature=True)
        self.readout = SpatialLinear(cin, h * w, squeeze, feature_dim)
        self.fc = nn.Linear(2 * num_keypoints + feature_dim, feature_dim)
        self.feature_dim = feature_dim
        self.token_dim = cin

    def keypoints(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, K, 2) keypoint (x, y) in [-1, 1] (for diagnostics)."""
        return self.pool(self.trunk(images * 2.0 - 1.0)).reshape(images.shape[0], -1, 2)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.trunk(images * 2.0 - 1.0)
        pooled = self.fc(torch.cat([self.pool(feat), self.readout(feat)], dim=-1))
        return pooled, feat.flatten(2).transpose(1, 2)


class SiglipImageEncoder(nn.Module):
    """Frozen SigLIP vision tower; a trainable linear maps its pooled output to feature_dim."""

    def __init__(self, hf_config: dict, feature_dim: int = 64, weights_dir: str | None = None):
        super().__init__()
        from transformers import SiglipVisionConfig, SiglipVisionModel

        if weights_dir is not None:
            self.model = SiglipVisionModel.from_pretrained(weights_dir, local_files_only=True)
        else:  # weights come from the policy checkpoint
            self.model = SiglipVisionModel(SiglipVisionConfig(**hf_config))
        self.model.requires_grad_(False).eval()
        cfg = self.model.config
        self.hf_config = cfg.to_dict()
        self.input_size = cfg.image_size
        self.fc = nn.Linear(cfg.hidden_size, feature_dim)
        self.feature_dim = feature_dim
        self.token_dim = cfg.hidden_size

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # frozen: no dropout
        return self

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                          align_corners=False)
        with torch.no_grad():
            out = self.model(pixel_values=x * 2.0 - 1.0)
        tokens = out.last_hidden_state
        pooled = out.pooler_output if out.pooler_output is not None else tokens.mean(1)
        return self.fc(pooled), tokens


def siglip_hf_config(path: str) -> dict:
    """Read a local SigLIP vision config (no download) as a plain dict for the checkpoint."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(path, local_files_only=True)
    cfg = getattr(cfg, "vision_config", cfg)
    return cfg.to_dict()


class T5TextEncoder:
    """Frozen T5 encoder for instructions: text -> (L, E) float32 embedding (Observation field).

    Loaded from a local directory or the HF cache only. Kept outside the policy module: the
    embedding is computed once per instruction, not per chunk.
    """

    def __init__(self, path: str | None = None, model=None, tokenizer=None, device: str = "cpu"):
        from transformers import AutoTokenizer, T5EncoderModel

        self.model = model if model is not None else T5EncoderModel.from_pretrained(
            path, local_files_only=True)
        self.model.requires_grad_(False).eval().to(device)
        self.tokenizer = tokenizer
        if tokenizer is None and path is not None:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.device = device

    @property
    def dim(self) -> int:
        return self.model.config.d_model

    @torch.inference_mode()
    def encode_ids(self, input_ids, attention_mask=None):
        ids = torch.as_tensor(input_ids, device=self.device).reshape(1, -1)
        mask = None if attention_mask is None else torch.as_tensor(
            attention_mask, device=self.device).reshape(1, -1)
        out = self.model(input_ids=ids, attention_mask=mask).last_hidden_state[0]
        if mask is not None:
            out = out[mask[0].bool()]
        return out.float().cpu().numpy()

    def encode(self, text: str):
        if self.tokenizer is None:
            raise ValueError("T5TextEncoder has no tokenizer; pass path= or tokenizer=")
        tok = self.tokenizer(text, return_tensors="pt")
        return self.encode_ids(tok["input_ids"], tok["attention_mask"])
