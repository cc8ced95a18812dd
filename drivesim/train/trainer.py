"""The training loop shared by every task: plain or under torchrun, DDP or FSDP2, bf16 autocast on
CUDA, gradient accumulation and clipping, AdamW with warm-up and cosine decay, EMA, validation,
TensorBoard, atomic keep-last-k checkpoints, resume, and a clean stop on SIGTERM or SIGINT."""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import time
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from drivesim.errors import ConfigError, DrivesimError
from drivesim.train import checkpoint as ckpt
from drivesim.train import distributed as ddp
from drivesim.train import init_from
from drivesim.train.config import TrainConfig, to_dict
from drivesim.train.data import SeededItems, StepBatches
from drivesim.train.ema import EMA
from drivesim.train.task import Task


class TrainingStopped(DrivesimError):
    """Too many non-finite losses in a row: the run stops, its last checkpoint untouched."""


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """The learning-rate factor: linear from 0 over `warmup` steps, then cosine down to `min_ratio`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def checkpoint_blocks(model: torch.nn.Module, block_types: tuple[type, ...]) -> int:
    """Recompute each block's activations in the backward pass instead of keeping them."""
    count = 0
    for module in model.modules():
        if block_types and isinstance(module, block_types):
            module.forward = functools.partial(torch.utils.checkpoint.checkpoint, module.forward, use_reentrant=False)
            count += 1
    return count


class StopRequest:
    """Turns SIGTERM and SIGINT into a flag the loop checks after each step (so a step is never cut)."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def agreed(self, world: ddp.World) -> bool:
        flag = torch.tensor([float(self.requested)], device=world.device)
        if world.distributed:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)


def _to_device(batch, device: torch.device):
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch.to(device, non_blocking=True) if isinstance(batch, torch.Tensor) else batch


def _no_sync(model: torch.nn.Module, sync: bool):
    """Skip the gradient all-reduce on all but the last micro-step of an accumulation."""
    if sync:
        return contextlib.nullcontext()
    if hasattr(model, "no_sync"):
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)
        return _ResyncOnExit(model)
    return contextlib.nullcontext()


class _ResyncOnExit(contextlib.AbstractContextManager):
    def __init__(self, model):
        self.model = model

    def __exit__(self, *exc):
        self.model.set_requires_gradient_sync(True)


class Trainer:
    """One run: built from a config and a task, then `run()`."""

    def __init__(self, config: TrainConfig, task: Task, resume: bool = False, progress: bool = True):
        config.validate()  # out= that cannot hold the run is refused here, before minutes of set-up
        self.config, self.task, self.progress = config, task, progress
        self.world = ddp.setup(config.device)
        try:
            self._build(config, task, resume)
        except BaseException:
            ddp.teardown(self.world)  # a config error must not leave the process group or float mode behind
            raise

    def _build(self, config: TrainConfig, task: Task, resume: bool) -> None:
        # The same initial weights on every rank: FSDP2 shards each rank's own copy, DDP broadcasts.
        torch.manual_seed(config.seed)
        self.run_dir = Path(config.out)
        self.checkpoints = self.run_dir / "checkpoints"
        if hasattr(task, "configure_loss"):
            task.configure_loss(config.loss)
        self.train_set, self.val_set = task.datasets(config.data)
        model = task.build_model(config.model).to(self.world.device)
        if config.init_from and not resume:
            # Trained weights replace the data-dependent initialisation; a task may still fit what they lack.
            self._say(init_from.apply_init(model, init_from.load_init_state(config.init_from, config.task)))
            for line in getattr(task, "initialize_loaded", lambda *_: ())(model, self.train_set, config.seed):
                self._say(line)
        elif not resume and hasattr(task, "initialize"):
            # Data-dependent initialisation, the same on every rank (the task draws with its own seed).
            for line in task.initialize(model, self.train_set, config.seed):
                self._say(line)
        if config.freeze:
            self._say(init_from.freeze(model, config.freeze))
        if config.compile:
            self._say(f"compile: {init_from.compile_blocks(model, task.block_types)} blocks compiled on first use")
        if config.activation_checkpointing:
            checkpoint_blocks(model, task.block_types)
        self.model = ddp.wrap(model, self.world, config.parallel, task.block_types)
        ddp.seed_everything(config.seed, self.world.rank)
        optim = config.optim
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=optim.lr, betas=optim.betas,
                                           weight_decay=optim.weight_decay)
        factor = functools.partial(warmup_cosine, warmup=optim.warmup_steps, total=config.steps,
                                   min_ratio=optim.min_lr_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.ema = EMA(self.model, config.ema_decay) if config.ema_decay > 0 else None
        self.step, self.skipped, self.bad_in_row = 0, 0, 0
        if resume:
            self._resume()
        elif ckpt.complete_checkpoints(self.checkpoints, verify=False):
            raise ConfigError(f"out={self.run_dir} already has checkpoints: pass --resume to continue that run, "
                              "or choose another out")
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                         if self.world.device.type == "cuda" and config.precision in ("auto", "bf16")
                         else contextlib.nullcontext())

    def _resume(self) -> None:
        found = ckpt.latest_checkpoint(self.checkpoints, report=self._say)
        if found is None:
            raise ConfigError(f"--resume: no complete checkpoint in {self.checkpoints}")
        state = ckpt.read_checkpoint(found, self.world.rank)
        ddp.load_full_model_state(self.model, state["model"])
        training = state["training"]
        ddp.load_full_optimizer_state(self.model, self.optimizer, training["optimizer"])
        self.scheduler.load_state_dict(training["scheduler"])
        self.step, self.skipped = training["step"], training["skipped"]
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_full_state(state["ema"], ddp.clean_name)
        ddp.set_rng_state(state["rng"])
        self._say(f"resumed from {found} at step {self.step}")

    def _say(self, text: str) -> None:
        if self.world.main and self.progress:
            print(text, flush=True)

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (all ranks gather; rank 0 writes)."""
        model_state = ddp.full_model_state(self.model)
        optimizer_state = ddp.full_optimizer_state(self.model, self.optimizer)
        ema_state = self.ema.full_state(self.model, ddp.clean_name) if self.ema is not None else None
        ranks = [None] * self.world.size
        if self.world.distributed:
            dist.all_gather_object(ranks, ddp.rng_state())
        else:
            ranks = [ddp.rng_state()]
        path = None
        if self.world.main:
            training = {"optimizer": optimizer_state, "scheduler": self.scheduler.state_dict(), "step": self.step,
                        "skipped": self.skipped}
            path = ckpt.write_checkpoint(self.checkpoints, self.step, to_dict(self.config), model_state, ema_state,
                                         training, ranks, self.config.keep_last)
        if self.world.distributed:
            dist.barrier()
        return path

    def _loader(self, dataset, start_step: int, steps: int, batch_size: int, accum: int, seed: int):
        sampler = StepBatches(len(dataset), batch_size, accum, self.world.size, self.world.rank, seed, start_step,
                              steps)
        return torch.utils.data.DataLoader(SeededItems(dataset), batch_sampler=sampler,
                                           num_workers=self.config.num_workers,
                                           pin_memory=self.world.device.type == "cuda")

    def train_step(self, batches) -> dict[str, float] | None:
        """One optimizer step over grad_accum micro-batches; None when the loss was not finite (skipped)."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        accum, total, logged = self.config.grad_accum, 0.0, {}
        finite = True
        for micro in range(accum):
            batch = _to_device(next(batches), self.world.device)
            with _no_sync(self.model, micro == accum - 1), self.autocast:
                loss, values = self.task.loss(self.model, batch)
            finite = finite and bool(torch.isfinite(loss.detach()).all())
            (loss / accum).backward()
            total += float(loss.detach()) / accum
            for name, value in values.items():
                logged[name] = logged.get(name, 0.0) + value / accum
        # One agreement per step, not per micro-step: every process skips a bad step together.
        finite = ddp.everywhere(finite, self.world)
        grad_norm = torch.tensor(0.0)
        if finite and self.config.optim.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
            finite = ddp.all_finite(grad_norm.detach().float().reshape(1), self.world)
        if not finite:
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return {"loss": total, "grad_norm": float(grad_norm), **logged}

    def validate(self) -> dict[str, float]:
        if self.val_set is None:
            return {}
        loader = self._loader(self.val_set, 0, self.config.val_batches, self.config.batch_size, 1,
                              self.config.seed + 1)
        self.model.eval()
        with torch.no_grad(), self.autocast:
            metrics = self.task.validate(self.model, (_to_device(b, self.world.device) for b in loader))
        return ddp.mean_across(metrics, self.world)

    def run(self) -> dict[str, float]:
        """Train to config.steps (or until stopped); returns the last logged and validation values."""
        from tqdm import tqdm

        config = self.config
        writer = None
        if self.world.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        batches = iter(self._loader(self.train_set, self.step, config.steps, config.batch_size, config.grad_accum,
                                    config.seed))
        samples_per_step = config.batch_size * config.grad_accum * self.world.size
        bar = tqdm(total=config.steps, initial=self.step, desc=f"train {self.task.name}", unit="step",
                   disable=not (self.world.main and self.progress))
        last: dict[str, float] = {}
        try:
            with StopRequest() as stop:
                while self.step < config.steps:
                    started = time.perf_counter()
                    values = self.train_step(batches)
                    self.scheduler.step()
                    self.step += 1
                    if values is None:
                        self.skipped += 1
                        self.bad_in_row += 1
                        self._say(f"step {self.step}: loss not finite, step skipped ({self.skipped} so far)")
                        if self.bad_in_row >= config.max_bad_steps:
                            raise TrainingStopped(
                                f"{self.bad_in_row} non-finite losses in a row at step {self.step}: stopping; the "
                                f"last checkpoint in {self.checkpoints} is intact (lower optim.lr or check the data)")
                    else:
                        self.bad_in_row = 0
                        last = values
                        rate = samples_per_step / (time.perf_counter() - started)
                        bar.set_postfix(loss=f"{values['loss']:.4f}", samples_s=f"{rate:.1f}")
                        if writer is not None and (self.step % config.log_every == 0 or self.step == 1):
                            for name, value in values.items():
                                writer.add_scalar(f"train/{name}", value, self.step)
                            writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.step)
                            writer.add_scalar("train/samples_per_s", rate, self.step)
                            writer.add_scalar("train/skipped_steps", self.skipped, self.step)
                    bar.update(1)
                    if self.step % config.val_every == 0 or self.step == config.steps:
                        metrics = self.validate()
                        last.update({f"val/{k}": v for k, v in metrics.items()})
                        if writer is not None:
                            for name, value in metrics.items():
                                writer.add_scalar(f"val/{name}", value, self.step)
                    if self.val_set is not None and (self.step % config.sample_every == 0
                                                     or self.step == config.steps):
                        self._write_samples(writer)  # every rank runs the model: FSDP gathers across ranks
                    stopping = stop.agreed(self.world)
                    periodic = self.step % config.checkpoint_every == 0 or self.step == config.steps
                    # Not inside a run of bad steps: the newest checkpoint stays the last good one.
                    if (periodic and self.bad_in_row == 0) or stopping:
                        path = self.save()
                        if path is not None and self.progress:
                            bar.write(f"checkpoint: {path}")
                    if stopping:
                        self._say(f"stopped by a signal at step {self.step}; resume with --resume")
                        break
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        last["skipped_steps"] = float(self.skipped)
        return last

    def _write_samples(self, writer) -> None:
        loader = self._loader(self.val_set, 0, 1, 1, 1, self.config.seed + 2)
        batch = _to_device(next(iter(loader)), self.world.device)
        self.model.eval()
        with torch.no_grad(), self.autocast:
            pictures = self.task.samples(self.model, batch)
        if writer is None:
            return
        for name, image in pictures.items():
            writer.add_image(f"samples/{name}", image.float().clamp(0, 1).cpu(), self.step)

    def close(self) -> None:
        ddp.teardown(self.world)


def train(config: TrainConfig, task: Task, resume: bool = False, progress: bool = True) -> dict[str, float]:
    """Build a Trainer, run it, and leave the process group whatever happens."""
    trainer = Trainer(config, task, resume=resume, progress=progress)
    try:
        return trainer.run()
    finally:
        trainer.close()
