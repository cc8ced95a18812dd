"""Tests for drivesim.wfm.text: the caption encoders (wordllama, trained, t5) and choosing one by name."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from drivesim.errors import ConfigError
from drivesim.wfm.text import TextEncoder, text_encoder

CAPTIONS = ["a rainy night on a highway", "driving on a motorway at night in heavy rain",
            "a sunny afternoon in a quiet parking lot"]


@pytest.fixture(scope="module")
def wordllama():
    return text_encoder("wordllama")


def mean_token(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (tokens * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)


# ---------------------------------------------------------------- wordllama


def test_wordllama_is_deterministic_and_independent_of_the_batch(wordllama):
    tokens, mask = wordllama.encode(CAPTIONS[:1])
    again, _ = wordllama.encode(CAPTIONS[:1])
    assert torch.equal(tokens, again)
    in_batch, batch_mask = wordllama.encode([CAPTIONS[0], CAPTIONS[1]])
    length = tokens.shape[1]
    assert torch.equal(in_batch[0, :length], tokens[0]) and torch.equal(batch_mask[0, :length], mask[0])
    assert not batch_mask[0, length:].any()


def test_wordllama_gives_frozen_tokens_of_its_dimension(wordllama):
    tokens, mask = wordllama.encode(CAPTIONS)
    assert isinstance(wordllama, TextEncoder) and not isinstance(wordllama, nn.Module)
    assert tokens.shape[0] == 3 and tokens.shape[2] == wordllama.dim == 256
    assert tokens.dtype == torch.float32 and mask.dtype == torch.bool and not tokens.requires_grad


def test_wordllama_gives_different_captions_different_tokens(wordllama):
    tokens, mask = wordllama.encode(["a car turns left", "a car turns right"])
    assert torch.equal(mask[0], mask[1])
    assert not torch.allclose(tokens[0], tokens[1])


def test_wordllama_puts_similar_captions_closer_than_unrelated_ones(wordllama):
    means = mean_token(*wordllama.encode(CAPTIONS + ["heavy traffic in the city", "cars queue at a city junction"]))
    similarity = torch.nn.functional.cosine_similarity(means[:, None], means[None], dim=-1)
    assert similarity[0, 1] > similarity[0, 2] + 0.1 and similarity[0, 1] > similarity[1, 2] + 0.1
    assert similarity[3, 4] > similarity[3, 2] and similarity[3, 4] > similarity[4, 0]


def test_masks_cover_each_captions_tokens_and_padding_is_zero(wordllama):
    captions = ["rain", "a truck on the left", CAPTIONS[1]]
    lengths = [len(ids) for ids in wordllama.token_ids(captions)]
    tokens, mask = wordllama.encode(captions)
    assert lengths[0] < lengths[1] < lengths[2]
    assert mask.shape == (3, lengths[2])
    assert mask.sum(dim=1).tolist() == lengths
    assert mask[:, 0].all() and all(mask[row, :n].all() for row, n in enumerate(lengths))
    assert torch.equal(tokens[~mask], torch.zeros_like(tokens[~mask]))
    assert (tokens[mask].abs().sum(dim=-1) > 0).all()


def test_an_empty_caption_is_one_zero_key(wordllama):
    tokens, mask = wordllama.encode(["", "   "])
    assert tokens.shape == (2, 1, 256) and mask.tolist() == [[True], [True]]
    assert torch.equal(tokens, torch.zeros_like(tokens))
    tokens, mask = wordllama.encode(["", CAPTIONS[0]])
    assert mask[0].tolist() == [True] + [False] * (mask.shape[1] - 1)
    assert torch.equal(tokens[0], torch.zeros_like(tokens[0]))


def test_max_tokens_cuts_long_captions():
    short = text_encoder("wordllama", max_tokens=4)
    tokens, mask = short.encode(CAPTIONS)
    assert tokens.shape == (3, 4, 256) and mask.all()
    full, _ = text_encoder("wordllama").encode(CAPTIONS)
    assert torch.equal(tokens, full[:, :4])


def test_wordllama_missing_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "wordllama", None)  # import wordllama now fails, as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'wordllama>=0.4'.*'trained'"):
        text_encoder("wordllama")


def test_captions_must_be_a_list_of_strings(wordllama):
    with pytest.raises(ConfigError, match="captions"):
        wordllama.encode("a rainy night")


# ---------------------------------------------------------------- trained


def small_trained() -> nn.Module:
    torch.manual_seed(0)
    return text_encoder("trained", dim=32, heads=4, vocab_size=512)


def test_trained_encoder_learns_from_its_captions():
    encoder = small_trained()
    assert isinstance(encoder, nn.Module) and isinstance(encoder, TextEncoder)
    tokens, mask = encoder.encode(CAPTIONS)
    (tokens * torch.randn_like(tokens)).sum().backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    # A few steps pull two captions' mean tokens apart: the encoder can learn what tells captions apart.
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    target = torch.randn(2, 32)

    def loss() -> torch.Tensor:
        return (mean_token(*encoder.encode(CAPTIONS[:2])) - target).pow(2).mean()

    first = loss().item()
    for _ in range(30):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < 0.1 * first


def test_trained_tokens_do_not_depend_on_the_rest_of_the_batch():
    encoder = small_trained()
    alone, _ = encoder.encode(CAPTIONS[:1])
    batch, mask = encoder.encode([CAPTIONS[0], CAPTIONS[1] + " and fog"])
    torch.testing.assert_close(batch[0, :alone.shape[1]], alone[0], atol=1e-5, rtol=1e-5)
    assert not mask[0, alone.shape[1]:].any()
    assert torch.equal(batch[0, alone.shape[1]:], torch.zeros_like(batch[0, alone.shape[1]:]))


def test_trained_tokenisation_is_the_same_in_every_process():
    encoder = small_trained()
    captions = ["A rainy night, on the A9!", "", "Überholen links"]
    here = encoder.token_ids(captions)
    assert here[0][:2] == encoder.token_ids(["a RAINY"])[0] and here[1] == [] and len(here[0]) == 8
    script = ("from drivesim.wfm.text import text_encoder; "
              f"print(text_encoder('trained', dim=32, vocab_size=512).token_ids({captions!r}))")
    environment = {**os.environ, "PYTHONHASHSEED": "12345"}  # a different salt for str hashes
    other = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, check=True)
    assert other.stdout.strip() == str(here)


def test_trained_encoder_keeps_an_empty_caption_as_one_key():
    encoder = small_trained()
    tokens, mask = encoder.encode(["", CAPTIONS[0]])
    assert mask[0].tolist() == [True] + [False] * (mask.shape[1] - 1)
    assert torch.isfinite(tokens).all() and tokens[0, 0].abs().sum() > 0


def test_trained_encoder_checks_its_shape():
    with pytest.raises(ConfigError, match="heads"):
        text_encoder("trained", dim=30, heads=4)


# ---------------------------------------------------------------- t5 and names


def test_t5_with_a_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "t5-base"
    with pytest.raises(ConfigError, match=str(missing)):
        text_encoder("t5", path=missing)


def test_t5_with_a_folder_without_weights_names_the_path(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=f"{tmp_path}.*safetensors"):
        text_encoder("t5", path=tmp_path)


def test_t5_without_transformers_names_the_fix(tmp_path, monkeypatch):
    (tmp_path / "model.safetensors").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ConfigError, match="pip install transformers"):
        text_encoder("t5", path=tmp_path)


def test_unknown_encoder_lists_the_choices():
    with pytest.raises(ConfigError, match="'bert'.*wordllama, trained, t5"):
        text_encoder("bert")


@pytest.mark.parametrize("name, options, problem", [("wordllama", {"size": 3}, "size"),
                                                    ("t5", {}, "path"),
                                                    ("wordllama", {"max_tokens": 0}, "max_tokens")])
def test_bad_options_name_the_option(name, options, problem):
    with pytest.raises(ConfigError, match=problem):
        text_encoder(name, **options)
