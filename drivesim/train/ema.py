"""An exponential moving average of a model's parameters, kept beside the model (sharded alike
under FSDP2, since each EMA tensor is a clone of its parameter)."""

from __future__ import annotations

import torch


class EMA:
    """ema = decay * ema + (1 - decay) * param after every optimizer step; buffers are copied."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for name, param in model.named_parameters():
            self.shadow[name].lerp_(param.detach(), 1 - self.decay)

    def full_state(self, model: torch.nn.Module, clean_name) -> dict[str, torch.Tensor]:
        """Whole tensors under the model's own parameter names (DTensors gathered), buffers as they are."""
        state = {clean_name(name): _full(tensor) for name, tensor in self.shadow.items()}
        state.update({clean_name(name): _full(b) for name, b in persistent_buffers(model)})
        return state

    @torch.no_grad()
    def load_full_state(self, state: dict[str, torch.Tensor], clean_name) -> None:
        for name, tensor in self.shadow.items():
            source = state[clean_name(name)].to(tensor.device, tensor.dtype)
            if hasattr(tensor, "device_mesh"):  # a DTensor shard: take this rank's piece of the whole
                from torch.distributed.tensor import distribute_tensor

                source = distribute_tensor(source, tensor.device_mesh, tensor.placements)
            tensor.copy_(source)


def persistent_buffers(model: torch.nn.Module):
    """(name, buffer) of the buffers a state dict holds: non-persistent ones are rebuilt, never saved."""
    for prefix, module in model.named_modules():
        for name, buffer in module.named_buffers(recurse=False):
            if name not in module._non_persistent_buffers_set:
                yield (f"{prefix}.{name}" if prefix else name), buffer


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return (tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor).detach().cpu()
