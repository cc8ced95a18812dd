"""The multi-view diffusion transformer: 1x2x2 patches of every view's latents; each block runs
self-attention within a view (3D RoPE), cross-view attention (each token to the neighbouring views
at the same latent time), cross-attention to condition tokens, then an MLP, all modulated by the
flow time through AdaLN-LoRA (Cosmos-Predict1). `views: joint` replaces the first two with one
attention over all views' tokens, as Cosmos' multi-view model does, to compare against."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from drivesim.errors import ConfigError
from drivesim.wfm.attention import attend
from drivesim.wfm.rope import Rope3D, rotate

VIEW_MODES = ("neighbours", "all", "joint", "none")


@dataclass
class DiTConfig:
    """The transformer's shape; presets below name the usual sizes."""

    latent_channels: int = 16
    patch: tuple[int, int, int] = (1, 2, 2)  # latent frames, rows, columns per token
    dim: int = 256
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    adaln_lora_rank: int = 64
    views: str = "neighbours"  # neighbours | all | joint | none: how views see each other
    neighbours: int = 2        # cameras each view attends to in `neighbours` mode (nearest in azimuth)
    condition_dim: int = 256   # width of the condition tokens (text after its projection, trajectory)

    def validate(self) -> DiTConfig:
        def positive_int(name):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {value!r}")

        for name in ("latent_channels", "dim", "depth", "heads", "adaln_lora_rank", "neighbours", "condition_dim"):
            positive_int(name)
        if self.views not in VIEW_MODES:
            raise ConfigError(f"model.views must be one of {', '.join(VIEW_MODES)}, got {self.views!r}")
        if self.dim % self.heads or (self.dim // self.heads) % 2 or self.dim // self.heads < 6:
            raise ConfigError(f"model.dim={self.dim} must split into {self.heads} heads of an even width >= 6")
        if len(self.patch) != 3 or any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in self.patch):
            raise ConfigError(f"model.patch must be three positive integers (time, rows, columns), got {self.patch}")
        patch_values = self.latent_channels * math.prod(self.patch)
        if self.dim < patch_values:
            # A token narrower than its patch cannot carry the patch through: at dim 64 for 64 patch values,
            # a tiny model's one-clip flow loss stalled at 14% of its start, at dim 128 it fell to 3.5%.
            raise ConfigError(f"model.dim={self.dim} is narrower than a patch ({self.latent_channels} channels x "
                              f"{'x'.join(map(str, self.patch))} = {patch_values} values)")
        if not self.mlp_ratio > 0:
            raise ConfigError(f"model.mlp_ratio must be > 0, got {self.mlp_ratio}")
        return self


def tiny(**overrides) -> DiTConfig:
    """For tests: a fraction of a second per step on a CPU."""
    return dataclasses.replace(DiTConfig(dim=128, depth=2, heads=4, adaln_lora_rank=16, condition_dim=64),
                               **overrides).validate()


def small(**overrides) -> DiTConfig:
    """Trainable on a CPU at small image sizes."""
    return dataclasses.replace(DiTConfig(dim=256, depth=6, heads=4, adaln_lora_rank=64), **overrides).validate()


def base(**overrides) -> DiTConfig:
    """For one GPU."""
    return dataclasses.replace(DiTConfig(dim=768, depth=12, heads=12, adaln_lora_rank=128, condition_dim=768),
                               **overrides).validate()


def large(**overrides) -> DiTConfig:
    """For several GPUs under FSDP."""
    return dataclasses.replace(DiTConfig(dim=1536, depth=28, heads=24, adaln_lora_rank=256, condition_dim=1024),
                               **overrides).validate()


PRESETS = {"tiny": tiny, "small": small, "base": base, "large": large}


def azimuth_neighbours(ego_from_cam: torch.Tensor, count: int) -> torch.Tensor:
    """[B, V, 4, 4] -> [B, V, K] indices of each camera's K nearest cameras by viewing azimuth.

    The azimuth of a camera is that of its optical axis (z) in the ego frame; K = min(count, V - 1).
    Ties (two cameras looking the same way) are broken by the camera's own direction vector, not its
    index, so that permuting the views permutes the neighbours with them.
    """
    axis = ego_from_cam[..., :2, 2].double()  # optical axis in the ego x-y plane
    azimuth = torch.atan2(axis[..., 1], axis[..., 0])
    difference = (azimuth[:, :, None] - azimuth[:, None, :] + math.pi) % (2 * math.pi) - math.pi
    distance = difference.abs()
    views = distance.shape[-1]
    distance = distance + torch.eye(views, dtype=distance.dtype, device=distance.device) * 1e9  # never itself
    # A tiny tie-breaker from the signed difference: left before right, the same whatever the order.
    distance = distance + 1e-9 * (difference > 0)
    return distance.argsort(dim=-1)[..., :min(count, views - 1)]


@dataclass
class BlockInputs:
    """What every block of one forward pass reads besides its tokens and the flow time, computed once per
    pass: the patch grid, its RoPE rotation, the views each view attends to and the condition tokens."""

    grid: tuple[int, int, int]          # latent (frames, rows, columns) in tokens
    rotation: tuple[torch.Tensor, torch.Tensor]  # Rope3D.rotation of the grid: (cos, sin) [L, D/2]
    neighbours: torch.Tensor | None     # [B, V, K]; None: no cross-view attention
    context: torch.Tensor               # [B, N, condition_dim] condition tokens
    context_mask: torch.Tensor          # [B, N] bool


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[B] flow times in [0, 1] -> [B, dim] sinusoids (of 1000 t, the DiT convention)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000.0 * t.float()[:, None] * frequencies[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class TimeEmbedder(nn.Module):
    """Flow time -> (embedding [B, D], the shared AdaLN-LoRA term [B, 3D] every sub-layer adds)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.shared = nn.Linear(dim, 3 * dim)

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.mlp(timestep_embedding(t, self.dim).to(self.mlp[0].weight.dtype))
        return embedding, self.shared(F.silu(embedding))


class Modulation(nn.Module):
    """AdaLN-LoRA: (shift, scale, gate) of one sub-layer, a low-rank map of the time embedding plus
    the shared term; a quarter of the parameters of a full AdaLN linear per sub-layer at rank D/4."""

    def __init__(self, dim: int, rank: int):
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, 3 * dim, bias=False)

    def forward(self, embedding: torch.Tensor, shared: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.up(self.down(F.silu(embedding))) + shared).chunk(3, dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [N, L, D] with per-sample [N, D] shift and scale."""
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head attention with query/key RMS norm; self-attention when `context` is None."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(context_dim or dim, 2 * dim, bias=False)
        self.q_norm = nn.RMSNorm(dim // heads)
        self.k_norm = nn.RMSNorm(dim // heads)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, position=None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """`position` rotates queries and keys [N, H, L, D] (RoPE) in self-attention."""
        context = x if context is None else context
        q = rearrange(self.q(x), "n l (h d) -> n h l d", h=self.heads)
        k, v = rearrange(self.kv(context), "n l (two h d) -> two n h l d", two=2, h=self.heads)
        q, k = self.q_norm(q), self.k_norm(k)
        if position is not None:
            q, k = position(q), position(k)
        out = attend(q, k, v, mask=mask, check=False)  # shapes right by construction: no per-call checks
        return self.out(rearrange(out, "n h l d -> n l (h d)"))


class DiTBlock(nn.Module):
    """One block; tokens arrive as [B, V, L, D] with L = T * h * w per view."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        dim, heads = config.dim, config.heads
        self.mode = config.views
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.self_attention = Attention(dim, heads)
        self.self_mod = Modulation(dim, config.adaln_lora_rank)
        if self.mode in ("neighbours", "all"):
            self.view_attention = Attention(dim, heads)
            nn.init.zeros_(self.view_attention.out.weight)  # a fresh block is the single-view model
            nn.init.zeros_(self.view_attention.out.bias)
            self.view_mod = Modulation(dim, config.adaln_lora_rank)
        self.cross_attention = Attention(dim, heads, context_dim=config.condition_dim)
        self.cross_norm = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * config.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.mlp_mod = Modulation(dim, config.adaln_lora_rank)

    def forward(self, x: torch.Tensor, time: tuple[torch.Tensor, torch.Tensor], inputs: BlockInputs) -> torch.Tensor:
        """x [B, V, L, D]; time: TimeEmbedder's (embedding [B, D], shared [B, 3D]) -> x [B, V, L, D]."""
        embedding, shared = time
        batch, views, length, _ = x.shape
        rotation, neighbours = inputs.rotation, inputs.neighbours
        per_view = lambda y: rearrange(y, "b v l d -> (b v) l d")  # noqa: E731
        per_sample = lambda y: y.repeat_interleave(views, dim=0)  # [B, ...] -> [(B V), ...]  # noqa: E731

        shift, scale, gate = self.self_mod(embedding, shared)
        if self.mode == "joint":
            # One attention over every view's tokens. Each view keeps its own RoPE positions (views are told
            # apart by their camera rays, not by an order), so the model stays equivariant to view order.
            def position(y):
                y = rearrange(y, "b h (v l) d -> (b v) h l d", v=views)
                return rearrange(rotate(y, rotation), "(b v) h l d -> b h (v l) d", v=views)

            h = modulate(self.norm(rearrange(x, "b v l d -> b (v l) d")), shift, scale)
            h = self.self_attention(h, position=position)
            x = x + gate[:, None, None] * rearrange(h, "b (v l) d -> b v l d", v=views)
        else:
            h = modulate(self.norm(per_view(x)), per_sample(shift), per_sample(scale))
            h = self.self_attention(h, position=lambda y: rotate(y, rotation))
            x = x + gate[:, None, None] * rearrange(h, "(b v) l d -> b v l d", v=views)

        if self.mode in ("neighbours", "all") and neighbours is not None and neighbours.shape[-1] > 0:
            x = x + self._across_views(x, embedding, shared, inputs.grid, neighbours)

        # Condition tokens (trajectory, text) are the same for every view of a sample.
        h = self.cross_attention(per_view(self.cross_norm(x)), context=per_sample(inputs.context),
                                 mask=per_sample(inputs.context_mask)[:, None, None, :])
        x = x + rearrange(h, "(b v) l d -> b v l d", v=views)

        shift, scale, gate = self.mlp_mod(embedding, shared)
        h = self.mlp(modulate(self.norm(per_view(x)), per_sample(shift), per_sample(scale)))
        return x + gate[:, None, None] * rearrange(h, "(b v) l d -> b v l d", v=views)

    def _across_views(self, x, embedding, shared, grid, neighbours):
        """Each token attends to the tokens of its neighbouring views at the same latent time."""
        frames = grid[0]
        batch, views = x.shape[:2]
        attention = self.view_attention
        shift, scale, gate = self.view_mod(embedding, shared)
        h = modulate(self.norm(rearrange(x, "b v l d -> b (v l) d")), shift, scale)
        h = rearrange(h, "b (v t s) d -> b v t s d", v=views, t=frames)
        # Keys and values once per token, then gathered for the views that read them: projecting after the
        # gather would project every token once per view that has it as a neighbour.
        q = rearrange(attention.q(h), "b v t s (n e) -> (b v t) n s e", n=attention.heads)
        k, v = rearrange(attention.kv(h), "b v t s (two n e) -> two b v t n s e", two=2, n=attention.heads)
        q, k = attention.q_norm(q), attention.k_norm(k)
        rows = torch.arange(batch, device=x.device)[:, None, None]
        k, v = (rearrange(y[rows, neighbours], "b v k t n s e -> (b v t) n (k s) e") for y in (k, v))
        out = rearrange(attend(q, k, v, check=False), "(b v t) n s e -> b v (t s) (n e)", b=batch, v=views)
        return gate[:, None, None] * attention.out(out)


class FinalLayer(nn.Module):
    """Modulated norm, then a zero-initialised projection back to latent patches."""

    def __init__(self, dim: int, out_features: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, out_features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(F.silu(embedding)).chunk(2, dim=-1)
        return self.out(modulate(self.norm(x), shift, scale))


class MultiViewDiT(nn.Module):
    """Tokens in, velocity out: patch embedding, blocks, final layer. The conditions arrive already
    embedded (see model.WorldModel): `extra` [B, V, T', h', w', D] is added to the patch tokens,
    `context` [B, N, condition_dim] with `context_mask` [B, N] is what cross-attention reads."""

    def __init__(self, config: DiTConfig, in_channels: int):
        super().__init__()
        self.config = config.validate()
        pt, ph, pw = config.patch
        self.patch_in = nn.Linear(in_channels * pt * ph * pw, config.dim)
        self.time = TimeEmbedder(config.dim)
        self.rope = Rope3D(config.dim // config.heads)
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.depth))
        self.final = FinalLayer(config.dim, config.latent_channels * pt * ph * pw)

    def patch_grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        pt, ph, pw = self.config.patch
        if frames % pt or height % ph or width % pw:
            raise ConfigError(f"latents of {frames}x{height}x{width} (frames x rows x columns) do not split into "
                              f"{pt}x{ph}x{pw} patches")
        return frames // pt, height // ph, width // pw

    def forward(self, x: torch.Tensor, t: torch.Tensor, extra: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor, neighbours: torch.Tensor | None) -> torch.Tensor:
        """x [B, V, T, C_in, h, w], t [B] -> velocity [B, V, T, latent_channels, h, w]."""
        pt, ph, pw = self.config.patch
        grid = self.patch_grid(x.shape[2], x.shape[4], x.shape[5])
        tokens = rearrange(x, "b v (t pt) c (h ph) (w pw) -> b v (t h w) (pt ph pw c)", pt=pt, ph=ph, pw=pw)
        tokens = self.patch_in(tokens) + rearrange(extra, "b v t h w d -> b v (t h w) d")
        embedding, shared = self.time(t)
        shared = shared.to(tokens.dtype)
        inputs = BlockInputs(grid, self.rope.rotation(grid, tokens.device, tokens.dtype), neighbours, context,
                             context_mask)
        for block in self.blocks:
            tokens = block(tokens, (embedding, shared), inputs)
        views = tokens.shape[1]
        out = self.final(rearrange(tokens, "b v l d -> (b v) l d"),
                         embedding.repeat_interleave(views, dim=0))
        return rearrange(out, "(b v) (t h w) (pt ph pw c) -> b v (t pt) c (h ph) (w pw)", v=views,
                         t=grid[0], h=grid[1], w=grid[2], pt=pt, ph=ph, pw=pw)
