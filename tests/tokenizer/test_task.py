"""`drivesim train tokenizer` and `drivesim tokenizer eval` end to end on a small synthetic store."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from drivesim.cli import main
from drivesim.errors import ConfigError
from drivesim.tokenizer.metrics import gradient_loss, psnr, ssim
from drivesim.tokenizer.task import TokenizerTask, load_trained, model_config

CONFIG = Path(__file__).parents[2] / "configs" / "tokenizer-tiny.yaml"


@pytest.fixture(scope="module")
def trained_run(synthetic_store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tokenizer") / "run"
    code = main(["train", "tokenizer", "--config", str(CONFIG), f"data.store={synthetic_store}", f"out={out}",
                 "steps=6", "checkpoint_every=3", "val_every=3", "sample_every=3", "--quiet"])
    assert code == 0
    return out


def test_training_writes_checkpoints_a_trained_tokenizer_loads_from(trained_run, synthetic_store):
    model = load_trained(trained_run)
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    reconstruction, latents, _ = model(video)
    assert reconstruction.shape == video.shape and latents.shape == (1, 16, 2, 4, 4)
    raw = load_trained(trained_run / "checkpoints" / "step-00000003", ema=False)
    assert any(not torch.equal(a, b) for a, b in zip(raw.state_dict().values(), model.state_dict().values()))


def test_eval_prints_a_table_and_writes_side_by_side_videos(trained_run, synthetic_store, tmp_path, capsys):
    code = main(["tokenizer", "eval", "--checkpoint", str(trained_run), "--store", str(synthetic_store),
                 "--clips", "1", "--out", str(tmp_path / "videos"), "--videos", "1", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "CAM_FRONT" in out and "all" in out and "1 clips x 6 cameras, 9 frames at 96x64" in out
    videos = list((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 1
    import av

    with av.open(str(videos[0])) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (6 * 96, 2 * 64)  # six cameras, original above reconstruction
        assert sum(1 for _ in container.decode(stream)) == 9


def test_eval_takes_a_tokenizer_folder_resizes_and_scores_blockiness(trained_run, synthetic_store, tmp_path,
                                                                    capsys):
    from drivesim.tokenizer.pretrained import save_pretrained

    folder = save_pretrained(load_trained(trained_run), tmp_path / "tokenizer")
    code = main(["tokenizer", "eval", "--checkpoint", str(folder), "--store", str(synthetic_store), "--split", "all",
                 "--size", "48x32", "--frames", "5", "--clips", "1", "--quiet"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["camera", "PSNR", "dB", "SSIM", "blocky", "truth", "ratio"]
    overall = lines[[line.split()[0] for line in lines].index("all")].split()
    assert float(overall[5]) == pytest.approx(float(overall[3]) / float(overall[4]), abs=2e-3)
    assert any(line.startswith("blockiness rule (the reconstruction's at most 10% above") for line in lines)
    assert "1 clips x 6 cameras, 5 frames at 48x32" in lines[-1]


@pytest.mark.parametrize("flags,words", [(["--size", "50x32"], "not divisible"), (["--frames", "4"], "1 + 4k"),
                                         (["--size", "wide"], "--size must be WIDTHxHEIGHT")])
def test_eval_names_a_size_or_frame_count_it_cannot_use(trained_run, synthetic_store, capsys, flags, words):
    assert main(["tokenizer", "eval", "--checkpoint", str(trained_run), "--store", str(synthetic_store), *flags,
                 "--quiet"]) == 2
    assert words in capsys.readouterr().err


def test_eval_of_something_that_is_not_a_tokenizer_checkpoint_is_named(tmp_path, synthetic_store, capsys):
    assert main(["tokenizer", "eval", "--checkpoint", str(tmp_path), "--store", str(synthetic_store)]) == 2
    assert "not a checkpoint folder" in capsys.readouterr().err


def test_training_config_errors_name_the_key(synthetic_store, tmp_path, capsys):
    base = ["train", "tokenizer", "--config", str(CONFIG), f"out={tmp_path / 'run'}", "--quiet"]
    assert main([*base, f"data.store={synthetic_store}", "model.preset=huge"]) == 2
    assert "model.preset must be one of" in capsys.readouterr().err
    assert main([*base, f"data.store={synthetic_store}", "data.crop=[512, 512]"]) == 2
    assert "data.crop=[512, 512] is larger than the frames (96x64)" in capsys.readouterr().err
    assert main([*base, f"data.store={synthetic_store}", "optim.lr=fast"]) == 2
    assert "optim.lr must be a number" in capsys.readouterr().err
    assert main([*base, f"data.store={synthetic_store}", "stepz=3"]) == 2
    assert "unknown key 'stepz'" in capsys.readouterr().err
    assert main([*base, "data.store=/nonexistent/store"]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_model_section_takes_a_preset_and_overrides():
    config = model_config({"preset": "tiny", "temporal_compression": 8})
    assert config.temporal_compression == 8 and config.channels == 8
    with pytest.raises(ConfigError, match="unknown key 'depth'"):
        model_config({"preset": "tiny", "depth": 3})


def test_metrics_rank_reconstructions_sensibly():
    torch.manual_seed(0)
    video = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    assert psnr(video, video).min() > 90 and torch.allclose(ssim(video, video), torch.ones(2), atol=1e-4)
    slightly, badly = video + 0.02 * torch.randn_like(video), video + 0.5 * torch.randn_like(video)
    assert psnr(slightly, video).min() > psnr(badly, video).max()
    assert ssim(slightly, video).min() > ssim(badly, video).max()
    assert float(gradient_loss(video, video)) == 0.0
    # PSNR on the [0, 1] scale: an error of 0.2 on [-1, 1] is 0.1 there, i.e. 20 dB.
    assert psnr(video + 0.2, video).mean().item() == pytest.approx(20.0, abs=1e-3)


def test_task_loss_is_finite_and_gives_gradients():
    task = TokenizerTask()
    model = task.build_model({"preset": "tiny"})
    batch = {"video": torch.rand(2, 3, 5, 32, 32) * 2 - 1}
    loss, values = task.loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and {"l1", "psnr"} <= set(values)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_adversarial_terms_reach_disjoint_weights():
    task = TokenizerTask()
    task.configure_loss({"adversarial_weight": 0.1, "discriminator_channels": 8})
    model = task.build_model({"preset": "tiny"})
    video = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    _, _, extras = model(video, adversarial=True)
    extras["generator_loss"].backward(retain_graph=True)
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.tokenizer.parameters())
    model.zero_grad(set_to_none=True)
    extras["discriminator_loss"].backward()
    assert all(p.grad is None for p in model.tokenizer.parameters())
    assert all(p.grad is not None for p in model.discriminator.parameters())
    loss, values = task.loss(model, {"video": video})
    assert torch.isfinite(loss) and {"generator", "discriminator"} <= set(values)


def test_a_run_with_the_adversarial_term_gives_a_loadable_tokenizer(synthetic_store, tmp_path):
    out = tmp_path / "gan"
    assert main(["train", "tokenizer", "--config", str(CONFIG), f"data.store={synthetic_store}", f"out={out}",
                 "steps=2", "checkpoint_every=2", "val_every=2", "sample_every=2", "loss.adversarial_weight=0.1",
                 "--quiet"]) == 0
    model = load_trained(out)
    assert not hasattr(model, "discriminator")
    assert model(torch.zeros(1, 3, 5, 32, 32))[0].shape == (1, 3, 5, 32, 32)
    with pytest.raises(ConfigError, match="loss.ssim_weight must be >= 0"):
        TokenizerTask().configure_loss({"ssim_weight": -1})
