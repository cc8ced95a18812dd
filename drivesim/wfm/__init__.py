"""The multi-view world model: a flow-matching DiT conditioned on cameras, trajectory, layout and text."""
