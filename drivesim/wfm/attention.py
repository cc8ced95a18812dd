"""One attend() for every attention in the world model, over flash-attn, PyTorch SDPA or plain math.

The backend comes from the call, else set_backend(), else the DRIVESIM_ATTENTION environment variable, else
"auto": flash-attn when it can take the inputs (installed, CUDA, fp16/bf16, no mask), otherwise SDPA. Math
runs only when asked for: it is the readable reference the fast paths are tested against.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from drivesim.errors import ConfigError

__all__ = ["BACKENDS", "ENV_VAR", "attend", "backend_problem", "default_backend", "resolve", "set_backend"]

BACKENDS = ("auto", "flash-attn", "sdpa", "math")
ENV_VAR = "DRIVESIM_ATTENTION"

FLASH_ATTN_DTYPES = (torch.float16, torch.bfloat16)
FLASH_ATTN_MAX_HEAD_DIM = 256
FLASH_ATTN_MIN_CAPABILITY = (8, 0)  # flash-attn 2 runs on Ampere and newer
# SDPA's flash kernel first; inputs it cannot take (float32, a mask, some head dims) fall through to the
# kernels PyTorch would otherwise choose, in its default order.
SDPA_CUDA_PRIORITY = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH,
                      SDPBackend.CUDNN_ATTENTION]

_process_backend: str | None = None


def set_backend(name: str | None) -> None:
    """Set the backend attend() uses when a call names none; None goes back to DRIVESIM_ATTENTION, else auto."""
    global _process_backend
    if name is not None:
        _check_name(name, "set_backend")
    _process_backend = name


def default_backend() -> tuple[str, str]:
    """The process default backend and where it comes from (for error messages)."""
    if _process_backend is not None:
        return _process_backend, "set_backend"
    name = os.environ.get(ENV_VAR, "").strip().lower()
    if not name:
        return "auto", "the default"
    _check_name(name, f"environment variable {ENV_VAR}")
    return name, f"environment variable {ENV_VAR}"


def backend_problem(name: str, q: Tensor | None = None, mask: Tensor | None = None) -> str | None:
    """Why backend `name` cannot attend with queries like `q` (and `mask`), or None when it can.

    Without `q`, only what this machine lacks counts. auto, sdpa and math run wherever torch does."""
    _check_name(name, "attention backend")
    if name != "flash-attn":
        return None
    if q is not None:
        if q.device.type != "cuda":
            return f"flash-attn runs on CUDA tensors only; the inputs are on {q.device.type}"
        if q.dtype not in FLASH_ATTN_DTYPES:
            return f"flash-attn takes float16 or bfloat16 only; the inputs are {q.dtype}"
        if q.shape[-1] > FLASH_ATTN_MAX_HEAD_DIM:
            return f"flash-attn takes head dims up to {FLASH_ATTN_MAX_HEAD_DIM}; the inputs have {q.shape[-1]}"
    if mask is not None:
        return "flash-attn takes no attention mask"
    if q is None and not torch.cuda.is_available():
        return "flash-attn needs a CUDA device and this machine has none"
    capability = _capability(q.device.index if q is not None else None)
    if capability < FLASH_ATTN_MIN_CAPABILITY:
        return (f"flash-attn needs a GPU of compute capability 8.0 or newer; this one is "
                f"{capability[0]}.{capability[1]}")
    return _flash_attn()[1]


def resolve(name: str | None, q: Tensor, mask: Tensor | None = None) -> str:
    """The concrete backend that attends with queries like `q`: None is the process default, auto turns
    into flash-attn or sdpa. A backend asked for by name that cannot run these inputs raises ConfigError."""
    source = "attend(backend=...)"
    if name is None:
        name, source = default_backend()
    _check_name(name, source)
    if name == "auto":
        return "flash-attn" if backend_problem("flash-attn", q, mask) is None else "sdpa"
    problem = backend_problem(name, q, mask)
    if problem is not None:
        raise ConfigError(f"{source}: attention backend {name!r} cannot run these inputs: {problem}")
    return name


def attend(q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None = None, backend: str | None = None,
           check: bool = True) -> Tensor:
    """softmax(q k^T / sqrt(D)) v: q [B, H, Lq, D], k and v [B, H, Lk, D] -> [B, H, Lq, D].

    `mask` (optional, bool, broadcastable to [B, H, Lq, Lk]) is True where a query may see a key; every
    query must see at least one. Without it every query sees every key. check=False skips the shape checks:
    for callers whose shapes are right by construction (the DiT's blocks, many calls per step)."""
    if check:
        _check_inputs(q, k, v, mask)
    if mask is not None:
        mask = mask[(None,) * (4 - mask.dim())]  # SDPA's CPU kernels want all four axes
    return KERNELS[resolve(backend, q, mask)](q, k, v, mask)


def _flash_attn_attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    flash_attn_func = _flash_attn()[0]
    q, k, v = (rearrange(x, "b h l d -> b l h d") for x in (q, k, v))  # flash-attn's layout
    out = flash_attn_func(q, k, v, softmax_scale=q.shape[-1] ** -0.5)  # (B, Lq, H, D)
    return rearrange(out, "b l h d -> b h l d")


def _sdpa_attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    if q.device.type != "cuda":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with sdpa_kernel(SDPA_CUDA_PRIORITY, set_priority=True):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _math_attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    dtype = q.dtype
    compute = torch.promote_types(dtype, torch.float32)  # half-precision inputs accumulate in float32
    q, k, v = q.to(compute), k.to(compute), v.to(compute)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B, H, Lq, Lk); scaled first, so no overflow
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(dim=-1) @ v).to(dtype)  # (B, H, Lq, D)


KERNELS: dict[str, Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor]] = {
    "flash-attn": _flash_attn_attend, "sdpa": _sdpa_attend, "math": _math_attend}


def _check_name(name: str, source: str) -> None:
    if name not in BACKENDS:
        raise ConfigError(f"{source}: unknown attention backend {name!r}; choose one of {', '.join(BACKENDS)}")


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> None:
    shapes = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
    if q.dim() != 4 or k.shape != v.shape or k.dim() != 4 or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ConfigError(f"attend takes q [B, H, Lq, D] and k, v [B, H, Lk, D]; got {shapes}")
    if not q.dtype == k.dtype == v.dtype or not q.device == k.device == v.device:
        raise ConfigError(f"attend takes q, k, v of one dtype on one device; got {q.dtype}, {k.dtype}, {v.dtype} "
                          f"on {q.device}, {k.device}, {v.device}")
    if mask is None:
        return
    full = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    if mask.dtype != torch.bool or mask.dim() > 4 or _broadcast(mask.shape, full) != full:
        raise ConfigError(f"attend's mask must be bool and broadcast to [B, H, Lq, Lk] = {list(full)}; got "
                          f"{mask.dtype} {tuple(mask.shape)}")


def _broadcast(shape: torch.Size, full: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        return tuple(torch.broadcast_shapes(shape, full))
    except RuntimeError:
        return None


@functools.cache
def _capability(device_index: int | None) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device_index)


@functools.cache
def _flash_attn() -> tuple[Callable | None, str | None]:
    """flash_attn.flash_attn_func, or why it cannot be had (imported once, on first need)."""
    try:
        module = importlib.import_module("flash_attn")
    except ModuleNotFoundError as error:
        if error.name != "flash_attn":
            return None, f"flash-attn does not import: {error}"
        return None, "flash-attn is not installed (pip install 'drivesim[gpu]')"
    except Exception as error:  # a build for another torch or CUDA fails with OSError or undefined symbols
        return None, f"flash-attn does not import: {type(error).__name__}: {error}"
    return module.flash_attn_func, None
