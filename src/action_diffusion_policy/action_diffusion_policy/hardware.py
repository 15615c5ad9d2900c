"""What this machine's hardware can do fast, detected at run time (never assumed).

Project machines differ: some CPUs have native bf16 units (AVX512-BF16, AMX-BF16), where a bf16
matmul runs several times faster than fp32; on the others bf16 is emulated and slower. The
training loop and the policy node ask here, log the answer, and keep fp32 as the fallback.
"""

from __future__ import annotations

from functools import lru_cache

import torch

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
PRECISIONS = ("auto", "fp32", "bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """'auto' -> 'bf16' where the device computes bf16 natively, else 'fp32'.

    An explicit 'bf16' is honoured everywhere (it is only slower where emulated)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not allowed; expected one of {PRECISIONS}")
    if precision != "auto":
        return precision
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast(precision: str, device: torch.device | str):
    """The autocast context for a resolved precision ('fp32': a disabled one)."""
    dev = torch.device(device)
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")
