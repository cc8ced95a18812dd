"""Process groups and model wrapping, kept apart from the models: plain, DDP, or FSDP2 (fully_shard);
gloo on the CPU, NCCL on CUDA. A plain `python` run is a world of one and wraps nothing."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from drivesim.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device
    flushed_denormals: bool = False  # setup turned flushing on: teardown turns it off again

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("device=cuda, but torch sees no CUDA device (device=auto falls back to the CPU)")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(device: str) -> World:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK), if any."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = pick_device(device, local_rank)
    flushed = False
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    elif not denormals_flushed():
        flush_denormals()
        flushed = True
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return World(rank, size, local_rank, chosen, flushed)


def flush_denormals() -> None:
    """Treat subnormal floats as zero on the CPU. Gradients through layers that start at zero become
    subnormal, and x86 computes those some 100x slower: a tokenizer step grew from 0.5 to 3-6 s within
    150 steps. Call before the first parallel torch op: the thread pool copies the flag when it starts."""
    torch.set_flush_denormal(True)


def denormals_flushed() -> bool:
    """Whether this thread treats subnormal floats as zero (1e-30 * 1e-10 is subnormal in float32)."""
    return torch.tensor([1e-30], dtype=torch.float32).mul(1e-10).item() == 0.0


@contextlib.contextmanager
def flushing_denormals():
    """Subnormals flushed inside the block, the float mode found restored after it."""
    found = denormals_flushed()
    flush_denormals()
    try:
        yield
    finally:
        if not found:
            torch.set_flush_denormal(False)


def teardown(world: World | None = None) -> None:
    """Leave the process group, and hand back the float mode setup found: the flag is process-global,
    and code that runs after training in the same process (hypothesis, for one) needs subnormals."""
    if dist.is_initialized():
        dist.destroy_process_group()
    if world is not None and world.flushed_denormals:
        torch.set_flush_denormal(False)


def seed_everything(seed: int, rank: int) -> None:
    """Each rank its own stream (different augmentations), all fixed by the run's seed."""
    value = seed * 1000 + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def rng_state() -> dict:
    """This process's RNG states in a form torch.load(weights_only=True) reads back."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_version": random.getstate()[0], "python_gauss": random.getstate()[2],
             "numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_position": int(position),
             "numpy_has_gauss": int(has_gauss), "numpy_gauss": float(gauss)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_position"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def wrap(model: torch.nn.Module, world: World, parallel: str, block_types: tuple[type, ...]) -> torch.nn.Module:
    """DDP, or FSDP2 with each block of `block_types` sharded on its own and then the whole model."""
    if not world.distributed:
        return model
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for module in model.modules():
            if isinstance(module, block_types):
                fully_shard(module)
        return fully_shard(model)
    from torch.nn.parallel import DistributedDataParallel

    ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") and not hasattr(model, "reshard") else model


def clean_name(name: str) -> str:
    """A parameter name without the wrappers' prefixes, as the bare model names it."""
    for prefix in ("module.", "_orig_mod.", "_checkpoint_wrapped_module."):
        name = name.replace(prefix, "")
    return name


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on the CPU, on every rank (FSDP shards gathered)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {clean_name(k): v for k, v in state.items()}


def load_full_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    names = {clean_name(k): k for k in unwrap(model).state_dict()}
    set_model_state_dict(unwrap(model) if not hasattr(model, "reshard") else model,
                         {names.get(k, k): v for k, v in state.items()},
                         options=StateDictOptions(full_state_dict=True))


def full_optimizer_state(model, optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_optimizer_state(model, optimizer, state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def everywhere(flag: bool, world: World) -> bool:
    """True when `flag` holds on every rank, so all ranks take the same branch (e.g. skip a bad step)."""
    value = torch.tensor([float(flag)], device=world.device)
    if world.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item() > 0)


def all_finite(value: torch.Tensor, world: World) -> bool:
    """True when `value` is finite on every rank."""
    return everywhere(bool(torch.isfinite(value).all()), world)


def mean_across(values: dict[str, float], world: World) -> dict[str, float]:
    if not world.distributed or not values:
        return values
    names = sorted(values)
    tensor = torch.tensor([values[n] for n in names], dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor)
    return {n: float(v) / world.size for n, v in zip(names, tensor.tolist())}
