"""Caption encoders for the world model: captions -> per-token embeddings and a mask, offline.

"wordllama": pretrained static token embeddings shipped inside the `wordllama` wheel (no download).
"trained": a small encoder learned with the world model. "t5": a T5 encoder from a local folder.

Every encoder answers tokens [B, L, dim] and mask [B, L] (True: a key to attend to), L the batch's longest
caption (at least 1). Position 0 is always in the mask, so attention always has a key: an empty caption is
one padding token there (zeros for the frozen encoders; the trained encoder's output for its padding id).
Tokens outside the mask are zero. Captions are stripped; longer ones are cut to `max_tokens`.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import re
import zlib
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from drivesim.errors import ConfigError

__all__ = ["ENCODERS", "T5TextEncoder", "TextEncoder", "TrainedTextEncoder", "WordLlamaEncoder",
           "hashed_word_ids", "text_encoder"]


@runtime_checkable
class TextEncoder(Protocol):
    """What the world model needs from a caption encoder."""

    dim: int

    def encode(self, captions: list[str], device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """captions -> (tokens [B, L, dim] float, mask [B, L] bool) on `device`."""
        ...


def _check_captions(captions) -> list[str]:
    if not isinstance(captions, (list, tuple)) or not all(isinstance(c, str) for c in captions):
        raise ConfigError(f"captions must be a list of strings, got {type(captions).__name__}")
    return [caption.strip() for caption in captions]


def _check_max_tokens(max_tokens) -> int:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"text encoder option max_tokens must be a positive integer, got {max_tokens!r}")
    return max_tokens


def _device(device: torch.device | str | None) -> torch.device:
    device = torch.device(device or "cpu")
    # "cuda" and "cuda:0" name one device: one key for both in the per-device caches.
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _pad(ids: list[list[int]], pad_id: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Token id lists -> (ids [B, L], real [B, L]: a caption's own token, mask [B, L]: real or position 0)."""
    length = max([1, *map(len, ids)])
    padded = torch.full((len(ids), length), pad_id, dtype=torch.long)
    real = torch.zeros(len(ids), length, dtype=torch.bool)
    for row, caption_ids in enumerate(ids):
        padded[row, :len(caption_ids)] = torch.tensor(caption_ids, dtype=torch.long)
        real[row, :len(caption_ids)] = True
    mask = real.clone()
    mask[:, 0] = True
    return padded.to(device), real.to(device), mask.to(device)


# ---------------------------------------------------------------- wordllama


WORDLLAMA_WEIGHTS = "weights/l2_supercat_256.safetensors"
WORDLLAMA_TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"
WORDLLAMA_FIX = "install it with `pip install 'wordllama>=0.4'`, or choose the text encoder 'trained'"


def _wordllama_folder() -> Path:
    # Located, not imported: importing wordllama reconfigures the root logger (logging.basicConfig).
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"text encoder 'wordllama' needs the wordllama package, which is not installed: "
                          f"{WORDLLAMA_FIX}")
    if importlib.util.find_spec("tokenizers") is None:
        raise ConfigError("text encoder 'wordllama' needs the tokenizers package: `pip install tokenizers`")
    folder = Path(next(iter(spec.submodule_search_locations)))
    for name in (WORDLLAMA_WEIGHTS, WORDLLAMA_TOKENIZER):
        if not (folder / name).is_file():
            raise ConfigError(f"text encoder 'wordllama': {folder / name} is missing from the installed "
                              f"package; reinstall it with `pip install --force-reinstall 'wordllama>=0.4'`")
    return folder


@functools.lru_cache(maxsize=1)
def _load_wordllama(folder: Path):
    """(tokenizer, embedding table [vocab, dim] float32 on the CPU), loaded once per process."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / WORDLLAMA_TOKENIZER))
    embedding = load_file(str(folder / WORDLLAMA_WEIGHTS))["embedding.weight"].float()
    if tokenizer.get_vocab_size() > embedding.shape[0]:
        raise ConfigError(f"text encoder 'wordllama': the tokenizer in {folder} knows {tokenizer.get_vocab_size()} "
                          f"tokens, the embedding only {embedding.shape[0]}; reinstall wordllama")
    return tokenizer, embedding


class WordLlamaEncoder:
    """Frozen WordLlama token embeddings (l2_supercat, 256-d; Llama-2 tokenizer), one vector per token.

    Not an nn.Module: its 32000 x 256 table ships with the package, so it stays out of checkpoints.
    """

    def __init__(self, max_tokens: int = 32):
        self.max_tokens = _check_max_tokens(max_tokens)
        self.folder = _wordllama_folder()
        self.tokenizer, embedding = _load_wordllama(self.folder)
        self.dim = embedding.shape[1]
        self._embeddings = {torch.device("cpu"): embedding}

    def token_ids(self, captions: list[str]) -> list[list[int]]:
        # No <s>: a static embedding of it would only add the same vector to every caption.
        encodings = self.tokenizer.encode_batch(_check_captions(captions), add_special_tokens=False)
        return [encoding.ids[:self.max_tokens] for encoding in encodings]

    @torch.no_grad()
    def encode(self, captions: list[str], device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        device = _device(device)
        if device not in self._embeddings:
            self._embeddings[device] = self._embeddings[torch.device("cpu")].to(device)
        ids, real, mask = _pad(self.token_ids(captions), 0, device)
        return self._embeddings[device][ids] * real[..., None], mask


# ---------------------------------------------------------------- trained with the model


WORD = re.compile(r"\w+|[^\w\s]")


def hashed_word_ids(caption: str, vocab_size: int, max_tokens: int) -> list[int]:
    """Lower-cased words and punctuation -> ids in 1..vocab_size by CRC32: the same in every process
    (Python's hash() is salted per process), so checkpoints keep their meaning. 0 is padding."""
    return [zlib.crc32(word.encode("utf-8")) % vocab_size + 1 for word in WORD.findall(caption.lower())][:max_tokens]


class TrainedTextEncoder(nn.Module):
    """A small caption encoder learned with the world model: hashed words, embeddings, a few transformer layers."""

    def __init__(self, dim: int = 256, layers: int = 2, heads: int = 4, vocab_size: int = 8192,
                 max_tokens: int = 32):
        super().__init__()
        for name, value in (("dim", dim), ("layers", layers), ("heads", heads), ("vocab_size", vocab_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"text encoder 'trained': {name} must be a positive integer, got {value!r}")
        if dim % heads:
            raise ConfigError(f"text encoder 'trained': dim {dim} must be a multiple of heads {heads}")
        self.dim, self.vocab_size, self.max_tokens = dim, vocab_size, _check_max_tokens(max_tokens)
        self.embed = nn.Embedding(vocab_size + 1, dim)  # id 0: padding, and the one token of an empty caption
        self.position = nn.Parameter(torch.randn(max_tokens, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def token_ids(self, captions: list[str]) -> list[list[int]]:
        return [hashed_word_ids(caption, self.vocab_size, self.max_tokens) for caption in _check_captions(captions)]

    def encode(self, captions: list[str], device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        ids, _, mask = _pad(self.token_ids(captions), 0, self.embed.weight.device)
        x = self.embed(ids) + self.position[:ids.shape[1]]  # [B, L, dim]
        x = self.norm(self.layers(x, src_key_padding_mask=~mask)) * mask[..., None]
        return (x, mask) if device is None else (x.to(device), mask.to(device))

    def forward(self, captions: list[str]) -> tuple[Tensor, Tensor]:
        return self.encode(captions)


# ---------------------------------------------------------------- T5 from a local folder


class T5TextEncoder:
    """Frozen T5 encoder (transformers' T5EncoderModel) read from a local folder; never downloads.

    Only safetensors weights are read: weights never travel as pickles.
    """

    def __init__(self, path: str | Path, max_tokens: int = 77):
        self.max_tokens = _check_max_tokens(max_tokens)
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"text encoder 't5': {folder} is not a folder; give path=<a local folder with a T5 "
                              "model: config.json, tokenizer files, *.safetensors>")
        if not any(folder.glob("*.safetensors")):
            raise ConfigError(f"text encoder 't5': {folder} holds no *.safetensors weights")
        try:
            from transformers import AutoTokenizer, T5EncoderModel
        except ImportError as error:
            raise ConfigError(f"text encoder 't5' ({folder}) needs transformers and sentencepiece: "
                              "`pip install transformers sentencepiece`") from error
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = T5EncoderModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
        except (OSError, ValueError) as error:
            raise ConfigError(f"text encoder 't5': cannot load a T5 encoder from {folder}: {error}") from error
        self.model.eval().requires_grad_(False)
        self.dim = self.model.config.d_model

    @torch.no_grad()
    def encode(self, captions: list[str], device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        device = _device(device)
        self.model.to(device)
        # T5 ends every caption with </s>, so an empty one is that single token.
        batch = self.tokenizer(_check_captions(captions), padding="longest", truncation=True,
                               max_length=self.max_tokens, return_tensors="pt").to(device)
        mask = batch["attention_mask"].bool()
        tokens = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return tokens.float() * mask[..., None], mask


# ---------------------------------------------------------------- by name


ENCODERS = {"wordllama": WordLlamaEncoder, "trained": TrainedTextEncoder, "t5": T5TextEncoder}


def text_encoder(name: str, **options) -> TextEncoder:
    """A text encoder by name with its options: wordllama (max_tokens), trained (dim, layers, heads,
    vocab_size, max_tokens), t5 (path, max_tokens). Only "trained" is an nn.Module with trainable weights."""
    if name not in ENCODERS:
        raise ConfigError(f"unknown text encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    encoder = ENCODERS[name]
    parameters = inspect.signature(encoder).parameters
    try:
        inspect.signature(encoder).bind(**options)
    except TypeError as error:
        raise ConfigError(f"text encoder {name!r}: {error}; its options are {', '.join(parameters)}") from None
    return encoder(**options)
