"""The optional adversarial term: a small 3D patch discriminator trained with the hinge loss beside
the tokenizer, in the same model and the same optimizer step (their gradients never mix)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """Video [N, 3, T, H, W] -> real/fake logits per space-time patch [N, 1, T, H/8, W/8]."""

    def __init__(self, channels: int = 32):
        super().__init__()
        widths = [3, channels, 2 * channels, 4 * channels]
        layers = []
        for index, (inp, out) in enumerate(zip(widths[:-1], widths[1:])):
            kernel = (1, 4, 4) if index == 0 else (3, 4, 4)  # the first layer looks at single frames
            layers += [nn.Conv3d(inp, out, kernel, stride=(1, 2, 2), padding=(kernel[0] // 2, 1, 1)),
                       nn.LeakyReLU(0.2)]
        layers.append(nn.Conv3d(widths[-1], 1, (1, 3, 3), padding=(0, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(video)


class TokenizerGAN(nn.Module):
    """A tokenizer with its discriminator: forward(video) is the tokenizer's; with adversarial=True the
    extras also carry the generator's and the discriminator's hinge losses."""

    def __init__(self, tokenizer: nn.Module, discriminator: PatchDiscriminator):
        super().__init__()
        self.tokenizer, self.discriminator = tokenizer, discriminator

    @property
    def config(self):
        return self.tokenizer.config

    def forward(self, video: torch.Tensor, adversarial: bool = False):
        reconstruction, latents, extras = self.tokenizer(video)
        if not adversarial:
            return reconstruction, latents, extras
        # The generator's term must not train the discriminator: its weights are frozen for that call.
        for p in self.discriminator.parameters():
            p.requires_grad_(False)
        generator = -self.discriminator(reconstruction).mean()
        for p in self.discriminator.parameters():
            p.requires_grad_(True)
        # And the discriminator's term must not train the tokenizer: it sees a detached reconstruction.
        real, fake = self.discriminator(video), self.discriminator(reconstruction.detach())
        discriminator = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        return reconstruction, latents, {**extras, "generator_loss": generator, "discriminator_loss": discriminator}
