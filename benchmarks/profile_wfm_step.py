"""Where one training step of configs/wfm.yaml spends its time: the window (read, resize, layout maps),
the tokenizer, the model's forward and backward, the optimizer; then torch.profiler's top operators.

    .venv/bin/python benchmarks/profile_wfm_step.py [--store out/det-store] [--steps 4] [--top 15]

Run it with PYTHONPATH set to another checkout to profile that code (the config is read from the
checkout too). It builds the task as the trainer does (no compile: the profiler shows eager operators).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="out/det-store")
    parser.add_argument("--tokenizer", default="weights/drivesim-small/tokenizer")
    parser.add_argument("--config", type=Path, default=Path("configs/wfm.yaml"))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(2)
    from drivesim.train.distributed import flush_denormals
    from drivesim.wfm.task import WfmTask

    flush_denormals()  # as the trainer does: denormal floats slow a CPU step several times

    config = yaml.safe_load(args.config.read_text())
    task = WfmTask()
    task.configure_loss(config.get("loss", {}))
    data = {**config["data"], "store": args.store, "tokenizer": args.tokenizer}
    train, _ = task.datasets(data)
    model = task.build_model(config["model"])
    for _ in task.initialize(model, train, 0):
        pass
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    stages: dict[str, list[float]] = {"window": [], "tokenizer": [], "model forward+backward": [], "optimizer": []}

    def batch_of(item):
        return {key: value[None] if torch.is_tensor(value) else [value] for key, value in item.items()}

    for step in range(args.steps):
        started = time.perf_counter()
        batch = batch_of(train[step % len(train)])
        stages["window"].append(time.perf_counter() - started)
        started = time.perf_counter()
        if "video" in batch:
            batch["latents"] = task._encode_window(batch.pop("video")[0])[None]
        stages["tokenizer"].append(time.perf_counter() - started)
        started = time.perf_counter()
        loss, _ = task.loss(model, batch)
        loss.backward()
        stages["model forward+backward"].append(time.perf_counter() - started)
        started = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        stages["optimizer"].append(time.perf_counter() - started)
    total = sum(statistics.median(values) for values in stages.values())
    print("| stage | median s | share |\n|---|---|---|")
    for name, values in stages.items():
        print(f"| {name} | {statistics.median(values):.2f} | {statistics.median(values) / total:.0%} |")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as found:
        loss, _ = task.loss(model, batch)
        loss.backward()
    events = sorted(found.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:args.top]
    whole = sum(e.self_cpu_time_total for e in found.key_averages())
    print("\n| operator (forward + backward of the model) | self ms | share | calls |\n|---|---|---|---|")
    for event in events:
        print(f"| {event.key} | {event.self_cpu_time_total / 1000:.0f} | {event.self_cpu_time_total / whole:.0%} "
              f"| {event.count} |")


if __name__ == "__main__":
    main()
