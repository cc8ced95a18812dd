"""Suite-wide settings, and the synthetic logs and clip store several test folders share (built once)."""

import os
from pathlib import Path

import pytest
from hypothesis import settings


# CI runs a fresh clone with no example database: derandomised, every run tries the same examples,
# so a red build means a change broke something, not that a new random draw was unlucky. Run with
# HYPOTHESIS_PROFILE=explore to search fresh examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def synthetic_logs(tmp_path_factory) -> Path:
    """Three short synthetic scenes at 12 Hz (day, night, rain), small images."""
    from drivesim.data import synth

    out = tmp_path_factory.mktemp("synthetic") / "logs"
    synth.generate(synth.SynthConfig(out=out, scenes=3, seconds=2.0, width=192, height=112, fps=12, seed=0),
                   progress=False)
    return out


@pytest.fixture(scope="session")
def synthetic_store(synthetic_logs, tmp_path_factory) -> Path:
    """Those logs as 9-frame clips at 96x64 (divisible by the tokenizers' 8 and 16)."""
    from drivesim.data.ingest import IngestConfig, ingest

    out = tmp_path_factory.mktemp("store") / "store"
    ingest(IngestConfig(dataroot=synthetic_logs, out=out, width=96, height=64, frames=9, stride=8), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_wfm_run(tmp_path_factory) -> Path:
    """A `drivesim train wfm` run folder as the rollout code reads it: one checkpoint of a tiny random world
    model with layout input (64x32 per camera, 5-frame chunks) and a tiny tokenizer beside it."""
    import torch
    import yaml

    from drivesim.render import LAYOUT_CHANNELS
    from drivesim.tokenizer.model import CausalVideoTokenizer, tiny
    from drivesim.tokenizer.pretrained import save_pretrained
    from drivesim.train.checkpoint import write_checkpoint
    from drivesim.wfm.model import WorldModel, model_config

    root = tmp_path_factory.mktemp("wfm-run")
    torch.manual_seed(0)
    tokenizer = CausalVideoTokenizer(tiny())
    tokenizer_folder = save_pretrained(tokenizer, root / "tokenizer")
    model_section = {"preset": "tiny", "text": "trained", "layout_channels": len(LAYOUT_CHANNELS)}
    tokens = tokenizer.config
    model = WorldModel(model_config({**model_section, "latent_channels": tokens.latent_channels,
                                     "temporal_compression": tokens.temporal_compression,
                                     "spatial_compression": tokens.spatial_compression}))
    with torch.no_grad():  # random, not zero, output layers: a blank model would draw the same for any seed
        for parameter in model.parameters():
            if parameter.numel() and not parameter.any():
                parameter.copy_(torch.randn(parameter.shape) * 0.05)
    config = {"task": "wfm", "out": str(root / "run"), "model": model_section,
              "data": {"store": "nowhere", "tokenizer": str(tokenizer_folder), "frames": 5,
                       "size": [64, 32], "layout": True}}
    run = root / "run"
    state = model.state_dict()
    write_checkpoint(run / "checkpoints", 10, config, state, state, {"step": 10}, [{}], keep_last=1)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


@pytest.fixture(autouse=True)
def _subnormal_floats_back():
    """A test that builds a Trainer without closing it leaves subnormal flushing on for the process,
    and hypothesis refuses to draw floats then: hand every test the default float mode."""
    yield
    import torch

    torch.set_flush_denormal(False)
