"""The causal video tokenizer: continuous or FSQ-discrete latents, 4x8x8 (default), 8x8x8 or 8x16x16."""

from drivesim.tokenizer.chunked import (ReceptiveField, decode_chunked, decode_tiled, encode_chunked, encode_tiled,
                                        receptive_field)
from drivesim.tokenizer.fsq import FSQ
from drivesim.tokenizer.model import (PRESETS, CausalVideoTokenizer, ShapeError, TokenizerConfig, flatten_views,
                                      unflatten_views)
from drivesim.tokenizer.pretrained import load_pretrained, save_pretrained

__all__ = ["CausalVideoTokenizer", "TokenizerConfig", "PRESETS", "ShapeError", "FSQ", "flatten_views",
           "unflatten_views", "encode_chunked", "decode_chunked", "encode_tiled", "decode_tiled",
           "ReceptiveField", "receptive_field", "save_pretrained", "load_pretrained"]
