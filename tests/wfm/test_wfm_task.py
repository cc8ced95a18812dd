"""`drivesim train wfm` on the synthetic store, a tiny world model that memorises one clip, and the
errors a user can make in a wfm config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from drivesim.cli import main
from drivesim.data.dataset import ClipDataset
from drivesim.tokenizer.model import CausalVideoTokenizer, fit_linear_path, flatten_views, tiny, unflatten_views
from drivesim.tokenizer.pretrained import save_pretrained
from drivesim.wfm import flow
from drivesim.wfm.conditions import Conditions
from drivesim.wfm.generate import SamplingConfig, sample_latents
from drivesim.wfm.model import WorldModel, model_config

CONFIG = Path(__file__).parents[2] / "configs" / "wfm-tiny.yaml"
VIEWS = ["CAM_FRONT_LEFT", "CAM_FRONT"]


@pytest.fixture(scope="module")
def tokenizer_folder(synthetic_store, tmp_path_factory) -> Path:
    """A tiny tokenizer whose linear path is fitted to the store: a real (if blurry) code in seconds."""
    torch.manual_seed(0)
    clips = ClipDataset(synthetic_store, split="train", frames=9, views=VIEWS)
    videos = torch.cat([flatten_views(clips[i]["video"][None]) for i in range(min(4, len(clips)))])
    model = CausalVideoTokenizer(tiny())
    fit_linear_path(model, videos)
    return save_pretrained(model, tmp_path_factory.mktemp("tokenizer") / "tiny")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4 / (a - b).pow(2).mean()))


@pytest.mark.slow
def test_a_tiny_model_memorises_one_clip_and_samples_it_back(synthetic_store, tokenizer_folder):
    from drivesim.tokenizer.pretrained import load_pretrained

    torch.manual_seed(0)
    tokenizer = load_pretrained(tokenizer_folder).requires_grad_(False)
    item = ClipDataset(synthetic_store, split="train", frames=9, views=VIEWS, random_crop=False)[0]
    with torch.no_grad():
        latents = unflatten_views(tokenizer.encode(flatten_views(item["video"][None])), len(VIEWS))
    model = WorldModel(model_config({"preset": "tiny", "text": "trained"}))
    model.latent_mean.copy_(latents.mean(dim=(0, 1, 2, 4, 5)))
    model.latent_std.copy_(latents.std(dim=(0, 1, 2, 4, 5)))
    x0 = model.normalize(latents)
    conditions = Conditions(item["intrinsics"][None], item["ego_from_cam"][None], item["ego0_from_ego"][None],
                            [item["caption"]])

    generator = torch.Generator().manual_seed(1)
    probes = [(torch.tensor([t]), torch.randn(x0.shape, generator=generator)) for t in (0.1, 0.3, 0.5, 0.7, 0.9)]

    def probe_loss() -> float:
        with torch.no_grad():
            return sum(float(flow.flow_loss(lambda x, t: model(x, t, conditions), x0, t, noise, None))
                       for t, noise in probes) / len(probes)

    before, steps, batch = probe_loss(), 500, 4
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    clean = flow.clean_frames(torch.tensor([0, 0, 1, 1]), batch, x0.shape[2])  # Text2World and Image2World
    repeated = conditions.repeat(batch).replace(clean=clean)
    targets = x0.expand(batch, *x0.shape[1:])
    for _ in range(steps):
        loss = flow.flow_loss(lambda x, t: model(x, t, repeated), targets,
                              flow.sample_time(batch), torch.randn_like(targets), clean)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    after = probe_loss()
    assert after <= 0.1 * before, f"the flow loss fell from {before:.3f} to {after:.3f}, not by 90%"

    model.eval()
    sampled = sample_latents(model, conditions, tuple(x0.shape), SamplingConfig(steps=20, clean_frames=1, shift=1.0),
                             clean_latents=x0)
    with torch.no_grad():
        decoded = tokenizer.decode(flatten_views(model.denormalize(sampled))).clamp(-1, 1)
        reference = tokenizer.decode(flatten_views(latents)).clamp(-1, 1)
    assert torch.equal(sampled[:, :, 0], x0[:, :, 0])  # the clean frame passes through sampling
    assert psnr(decoded, reference) >= 20


@pytest.fixture(scope="module")
def wfm_run(synthetic_store, tokenizer_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wfm") / "run"
    code = main(["train", "wfm", "--config", str(CONFIG), f"data.store={synthetic_store}",
                 f"data.tokenizer={tokenizer_folder}", "data.size=[96, 64]", f"out={out}", "steps=40",
                 "val_every=40", "sample_every=40", "checkpoint_every=40", "optim.lr=0.003", "--quiet"])
    assert code == 0
    return out


def test_train_wfm_runs_on_the_store_and_its_validation_loss_falls(wfm_run, synthetic_store, tokenizer_folder):
    from drivesim.train.checkpoint import latest_checkpoint, load_weights
    from drivesim.wfm.task import WfmTask

    checkpoint = latest_checkpoint(wfm_run / "checkpoints")
    assert checkpoint is not None and checkpoint.name.endswith("40")
    config = yaml.safe_load((checkpoint / "config.yaml").read_text())
    task = WfmTask()
    task.configure_loss(config["loss"])
    _, val = task.datasets(config["data"])
    fresh = task.build_model(config["model"])
    list(task.initialize(fresh, val, seed=0))
    trained = task.build_model(config["model"])
    trained.load_state_dict(load_weights(checkpoint / "model.safetensors"))
    assert trained.latent_std.ne(1).any()  # the latent statistics were set before step 0 and saved

    def val_loss(model) -> float:
        loader = torch.utils.data.DataLoader(val, batch_size=2)
        with torch.no_grad():
            return task.validate(model.eval(), loader)["loss"]

    assert val_loss(trained) < 0.9 * val_loss(fresh)
    assert list((wfm_run / "tensorboard").glob("events.*"))


@pytest.mark.parametrize("override, message", [
    ("data.tokenizer=/nonexistent/tokenizer", "data.tokenizer=/nonexistent/tokenizer: no such folder"),
    ("data.frames=8", "data.frames=8 must be 1 + a multiple of 4"),
    ("data.size=[100, 64]", "must be multiples of 16"),
    ("model.latent_channels=8", "model.latent_channels=8 but the tokenizer has 16"),
    ("loss.clean_frames=[0.5, 0.6]", "loss.clean_frames"),
    ("loss.drop.text=2", "loss.drop.text"),
    ("model.views=ring", "model.views"),
    ("loss.channel_weights=luma", "loss.channel_weights must be uniform or pixel"),
])
def test_wfm_config_errors_name_the_key(override, message, synthetic_store, tokenizer_folder, tmp_path, capsys):
    code = main(["train", "wfm", "--config", str(CONFIG), f"data.store={synthetic_store}",
                 f"data.tokenizer={tokenizer_folder}", "data.size=[96, 64]", f"out={tmp_path / 'run'}", override,
                 "--quiet"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_train_wfm_with_layout_maps_then_generate_a_scenario_from_the_run(synthetic_store, tokenizer_folder,
                                                                          tmp_path):
    """The loop a user runs: `drivesim train wfm data.layout=true`, then `drivesim generate` on that run."""
    from drivesim.render import LAYOUT_CHANNELS
    from drivesim.scenario import from_dict, save
    from drivesim.rollout import ROLLOUT_STORE
    from drivesim.train.checkpoint import latest_checkpoint, load_weights

    run = tmp_path / "run"
    code = main(["train", "wfm", "--config", str(CONFIG), f"data.store={synthetic_store}",
                 f"data.tokenizer={tokenizer_folder}", "data.size=[96, 64]", "data.layout=true",
                 f"model.layout_channels={len(LAYOUT_CHANNELS)}", f"out={run}", "steps=3", "val_every=3",
                 "sample_every=3", "checkpoint_every=3", "optim.lr=0.003",
                 # the shipped model's choices (configs/wfm.yaml), its speed-ups but compile among them
                 "model.prediction=data", "loss.channel_weights=pixel", "loss.time_shift=3",
                 "model.layout_encoder=patch", "data.cache_gb=0.5", "--quiet"])
    assert code == 0
    saved = yaml.safe_load((latest_checkpoint(run / "checkpoints") / "config.yaml").read_text())
    assert saved["model"]["prediction"] == "data" and saved["loss"]["channel_weights"] == "pixel"
    assert saved["model"]["layout_encoder"] == "patch" and saved["data"]["cache_gb"] == 0.5
    weights = load_weights(latest_checkpoint(run / "checkpoints") / "model.safetensors")
    # The layout encoder starts at zero; the maps reached the model's loss if training moved it.
    assert weights["layout.project.weight"].abs().sum() > 0

    document = {"name": "short", "prompt": "a car ahead", "rig": "front3", "fps": 12, "duration": 0.5, "seed": 1,
                "ego": {"waypoints": [{"t": 0, "x": 0, "y": 0}, {"t": 0.5, "x": 5, "y": 0}]},
                "agents": [{"id": "lead", "category": "vehicle.car", "size": [1.8, 4.5, 1.5],
                            "parked": {"x": 15, "y": 0, "yaw": 0}}],
                "road": {"lanes": [[[-10, 0], [100, 0]]], "road_edges": [[[-10, -2], [100, -2]]]}}
    scenario = save(from_dict(document, "short"), tmp_path / "short.yaml")
    out = tmp_path / "gen"
    assert main(["generate", "--scenario", str(scenario), "--checkpoint", str(run), "--out", str(out),
                 "--steps", "2", "--device", "cpu", "--quiet"]) == 0
    cameras = ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{c}.mp4" for c in cameras] + ["grid.mp4", "contact_sheet.png", "scenario.yaml", ROLLOUT_STORE])


def test_pixel_channel_weights_follow_what_each_channel_draws(tokenizer_folder):
    """A channel the decoder draws with twice the amplitude gets four times the weight; weights have mean 1."""
    from drivesim.wfm.pipeline import load_tokenizer
    from drivesim.wfm.task import channel_energy

    tokenizer = load_tokenizer(tokenizer_folder)
    channels = tokenizer.config.latent_channels
    mean, std = torch.zeros(channels), torch.ones(channels)
    energy = channel_energy(tokenizer, mean, std)
    assert energy.shape == (channels,) and bool((energy > 0).all())
    torch.testing.assert_close(energy.mean(), torch.tensor(1.0))
    doubled = std.clone()
    doubled[3] = 2.0
    ratio = channel_energy(tokenizer, mean, doubled) / energy
    others = torch.cat([ratio[:3], ratio[4:]])
    assert 2.5 < float(ratio[3] / others.mean()) < 5.5  # 4x if the decoder were linear around the mean
