"""The tokenizer computed the straightforward way, from a model's own modules and weights: F.pad then
nn.Conv3d on [N, C, T, H, W], the Haar levels one by one, pixel blocks materialised, einops rearranges.
This is the code the fast paths in drivesim.tokenizer replaced; tests/tokenizer/test_fast_paths.py checks
that they compute the same thing. (Imported by name; pytest puts this folder on sys.path.)"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from drivesim.tokenizer.layers import CausalConv3d, Downsample, ResBlock, SpatialAttention, Upsample, pair_mean
from drivesim.tokenizer.model import CausalVideoTokenizer
from drivesim.tokenizer.wavelet import haar_space, haar_time, inverse_haar_space, inverse_haar_time


def conv(layer: CausalConv3d, x: torch.Tensor) -> torch.Tensor:
    pads = (layer.space_pad, layer.space_pad, layer.space_pad, layer.space_pad, layer.time_pad, 0)
    if layer.time_pad or layer.space_pad:
        x = F.pad(x, pads, mode="replicate")
    return layer.conv(x)


def sequence(layers, x: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = LAYERS[type(layer)](layer, x)
    return x


def res_block(block: ResBlock, x: torch.Tensor) -> torch.Tensor:
    h = sequence(block.conv1, F.silu(x))
    h = sequence(block.conv2, F.silu(h))
    return block.skip(x) + h


def attention(layer: SpatialAttention, x: torch.Tensor) -> torch.Tensor:
    frames, height = x.shape[2], x.shape[3]
    q, k, v = rearrange(layer.qkv(layer.norm(x)), "n (three heads d) t h w -> three (n t) heads (h w) d",
                        three=3, heads=layer.heads)
    out = F.scaled_dot_product_attention(q, k, v)
    return x + layer.proj(rearrange(out, "(n t) heads (h w) d -> n (heads d) t h w", t=frames, h=height))


def downsample(layer: Downsample, x: torch.Tensor) -> torch.Tensor:
    x = conv(layer.space, x) + (F.avg_pool3d(x, (1, 2, 2)) if layer.shortcut else 0)
    if layer.time is None:
        return x
    return conv(layer.time, x) + (pair_mean(x) if layer.shortcut else 0)


def upsample(layer: Upsample, x: torch.Tensor) -> torch.Tensor:
    if layer.time is not None:
        pairs = rearrange(conv(layer.time, x), "n (k c) t h w -> n c (t k) h w", k=2)
        x = (repeat(x, "n c t h w -> n c (t k) h w", k=2) + pairs)[:, :, 1:]
    x = repeat(x, "n c t h w -> n c t (h i) (w j)", i=2, j=2)
    return conv(layer.space, x) + (x if layer.shortcut else 0)


LAYERS = {CausalConv3d: conv, ResBlock: res_block, SpatialAttention: attention, Downsample: downsample,
          Upsample: upsample, torch.nn.Sequential: sequence}


def wavelet_patch(x: torch.Tensor, levels: int) -> torch.Tensor:
    for _ in range(levels):
        x = haar_space(haar_time(x))
    return x


def wavelet_unpatch(x: torch.Tensor, levels: int) -> torch.Tensor:
    for _ in range(levels):
        x = inverse_haar_time(inverse_haar_space(x))
    return x


def encode(model: CausalVideoTokenizer, video: torch.Tensor) -> torch.Tensor:
    """Continuous latents [N, latent_channels, T', h, w]."""
    encoder = model.encoder
    x = sequence(encoder.stages, sequence(encoder.conv_in, wavelet_patch(video, encoder.patch.levels)))
    x = sequence(encoder.mid, x)
    latents = sequence(encoder.conv_out, F.silu(x))
    if encoder.shortcut:
        latents = latents + rearrange(x, "n (l g) t h w -> n l g t h w", l=latents.shape[1]).mean(dim=2)
    if encoder.linear is not None:
        latents = latents + encoder.linear.proj(encoder.linear.blocks(video))
    return latents


def decode(model: CausalVideoTokenizer, latents: torch.Tensor) -> torch.Tensor:
    decoder = model.decoder
    x = sequence(decoder.conv_in, latents)
    if decoder.shortcut:
        x = x + repeat(latents, "n l t h w -> n (l g) t h w", g=x.shape[1] // latents.shape[1])
    x = sequence(decoder.stages, sequence(decoder.mid, x))
    video = wavelet_unpatch(sequence(decoder.conv_out, F.silu(x)), decoder.unpatch.levels)
    if decoder.lapped is not None:  # a plain transposed convolution already (tokenizer/lapped.py)
        video = video + decoder.lapped(latents)
    if decoder.linear is None:
        return video
    linear = decoder.linear
    blocks = rearrange(linear.proj(latents), "n (c a i j) t h w -> n c (t a) (h i) (w j)",
                       a=linear.tc, i=linear.s, j=linear.s)
    blocks = torch.cat([blocks[:, :, :linear.tc].mean(dim=2, keepdim=True), blocks[:, :, linear.tc:]], dim=2)
    return video + blocks
