"""Training configs: dataclasses filled from YAML (yaml.safe_load) and `key.sub=value` overrides,
strictly, so a misspelt key or a wrong type is an error naming the key, not a silent default."""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from drivesim.errors import ConfigError


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to min_lr_ratio * lr."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # 0 disables clipping (NaN is refused: it would disable it silently)


@dataclass
class TrainConfig:
    """Everything a run needs besides the task's own `model` and `data` sections."""

    task: str = ""
    out: str = "runs/default"          # the run folder: checkpoints/, tensorboard/, config.yaml
    steps: int = 1000                  # optimizer steps
    batch_size: int = 2                # per process and micro-step
    grad_accum: int = 1                # micro-steps per optimizer step
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema_decay: float = 0.999           # 0 keeps no EMA weights
    device: str = "auto"               # auto | cpu | cuda
    precision: str = "auto"            # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    parallel: str = "ddp"              # ddp | fsdp (FSDP2 fully_shard)
    activation_checkpointing: bool = False
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    val_every: int = 200
    val_batches: int = 8
    sample_every: int = 500
    checkpoint_every: int = 200
    keep_last: int = 3
    max_bad_steps: int = 5             # consecutive non-finite losses before the run stops
    init_from: str = ""                # a fresh run starts from these weights (run, checkpoint or packed folder)
    freeze: list[str] = field(default_factory=list)  # parameter-name prefixes kept fixed, e.g. [encoder.]
    compile: bool = False              # torch.compile the task's blocks (minutes on the first step, then faster)
    model: dict = field(default_factory=dict)  # the task's model config, checked by the task
    data: dict = field(default_factory=dict)   # the task's data config, checked by the task
    loss: dict = field(default_factory=dict)   # the task's loss weights, checked by the task

    def validate(self) -> None:
        _check_finite(self)
        _check_run_folder(self.out)
        positive = ("steps", "batch_size", "grad_accum", "log_every", "val_every", "val_batches", "sample_every",
                    "checkpoint_every", "keep_last", "max_bad_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        choices = {"device": ("auto", "cpu", "cuda"), "precision": ("auto", "bf16", "fp32"),
                   "parallel": ("ddp", "fsdp")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        optim = self.optim
        if not (optim.lr > 0 and math.isfinite(optim.lr)):
            raise ConfigError(f"optim.lr must be a positive number, got {optim.lr}")
        if optim.warmup_steps < 0 or not 0 <= optim.min_lr_ratio <= 1 or optim.grad_clip < 0:
            raise ConfigError("optim: warmup_steps >= 0, 0 <= min_lr_ratio <= 1 and grad_clip >= 0 are required")
        if optim.weight_decay < 0:
            raise ConfigError(f"optim.weight_decay must be >= 0, got {optim.weight_decay}")
        if not all(0 <= b < 1 for b in optim.betas):
            raise ConfigError(f"optim.betas must be in [0, 1), got {optim.betas}")


def _check_finite(config, prefix: str = "") -> None:
    """Every float of a config dataclass (nested ones and tuples too) is a finite number: NaN compares false
    with every limit, so `grad_clip: .nan` would pass `grad_clip < 0` and turn clipping off."""
    for item in dataclasses.fields(config):
        value, name = getattr(config, item.name), f"{prefix}{item.name}"
        if dataclasses.is_dataclass(value):
            _check_finite(value, f"{name}.")
        for number in value if isinstance(value, tuple) else (value,):
            if isinstance(number, float) and not math.isfinite(number):
                raise ConfigError(f"{name} must be a finite number, got {value}")


def _check_run_folder(out) -> None:
    """out= names a folder (new or existing): refused here, before minutes of set-up, when it cannot be one."""
    if not isinstance(out, str) or not out.strip():
        raise ConfigError(f"out must name the run folder, got {out!r}")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"out={out} is a file, not a folder")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"out={out} cannot be created: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"out={out} cannot be created: {parent} is not writable")
    if not path.is_dir():
        # Try it, and leave nothing behind: os.access says yes to root anywhere, /proc included.
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".drivesim-probe-", dir=parent))
        except OSError as error:
            raise ConfigError(f"out={out} cannot be created in {parent}: {error.strerror or error}") from None


def _coerce(value, kind, where: str):
    """`value` as type `kind` (a dataclass, tuple, list, dict, scalar or Optional), or ConfigError at `where`."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        options = [k for k in options if k is not type(None)]
        for option in options[:-1]:  # bool | str: the first type the value is
            try:
                return _coerce(value, option, where)
            except ConfigError:
                pass
        kind = options[-1]
        origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        return from_dict(kind, value, where)
    if origin is tuple:
        items = typing.get_args(kind)
        if not isinstance(value, (list, tuple)) or (items[-1] is not Ellipsis and len(value) != len(items)):
            raise ConfigError(f"{where} must be a list of {len(items)} values, got {value!r}")
        inner = [items[0]] * len(value) if items[-1] is Ellipsis else items
        return tuple(_coerce(v, k, f"{where}[{i}]") for i, (v, k) in enumerate(zip(value, inner)))
    if origin is list or kind is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        item = (typing.get_args(kind) or (object,))[0]
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # YAML integers are unbounded
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return number
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls, data, where: str = "config"):
    """Build dataclass `cls` from a mapping; unknown keys and wrong types are errors naming the key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {'.'.join([where, unknown[0]]).removeprefix('config.')!r} "
                          f"(known: {', '.join(sorted(known))})")
    values = {name: _coerce(value, hints[name], f"{where}.{name}".removeprefix("config."))
              for name, value in data.items()}
    return cls(**values)


def apply_overrides(document: dict, overrides: list[str]) -> dict:
    """`key.sub=value` strings applied to a nested mapping; values are parsed as YAML (1e-4, true, [1, 2])."""
    document = yaml.safe_load(yaml.safe_dump(document)) or {}  # a deep copy
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {override!r} must look like key.sub=value")
        try:
            value = yaml.safe_load(text)
        # Not only YAMLError: PyYAML's constructors raise ValueError (`!!int abc`), IndexError (`!!int`),
        # AttributeError (`!!timestamp x`) and RecursionError (deep nesting) for text they cannot take.
        except Exception as error:  # noqa: BLE001 - a parse of text the user typed: any failure is theirs
            raise ConfigError(f"override {override!r}: value is not valid YAML ({_first_line(error)})") from None
        node = document
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {override!r}: {part} is not a mapping")
            node = child
        node[leaf] = value
    return document


def load_document(path: str | Path | None) -> dict:
    """A YAML config file as a mapping (an empty one for None), with errors naming the file."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        document = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path}: not a YAML file (it is not UTF-8 text)") from None
    except OSError as error:
        raise ConfigError(f"--config {path}: cannot read it ({error.strerror or error})") from None
    except Exception as error:  # noqa: BLE001 - PyYAML's constructors raise more than YAMLError (apply_overrides)
        raise ConfigError(f"--config {path}: not valid YAML ({_first_line(error)})") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"--config {path}: the top level must be a mapping, got {type(document).__name__}")
    return document


def _first_line(error: Exception) -> str:
    """What is wrong in one line: the CLI prints one, and PyYAML's own message quotes the file over several."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        mark = error.problem_mark
        return error.problem + (f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "")
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def to_dict(config) -> dict:
    """A dataclass as plain YAML-safe data (tuples become lists)."""
    return yaml.safe_load(yaml.safe_dump(_plain(dataclasses.asdict(config))))


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
