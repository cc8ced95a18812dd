"""The training stack shared by the tokenizer and the world model: configs, the loop, checkpoints,
processes (plain, DDP, FSDP2), EMA and step-indexed data."""
