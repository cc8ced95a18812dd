"""The synthetic driving logs of `drivesim synth`: a procedural town, traffic on it, the scenes
rendered by CPU ray casting and written as a nuScenes v1.0 data set (docs/synthetic_logs.md).

Importing this package stays light: the scenario checks and the editor read the ego car's size
from `traffic`, and must not pay for open3d. SynthConfig and generate load the renderer on use.
"""

__all__ = ["SynthConfig", "generate"]


def __getattr__(name: str):
    if name in __all__:
        from drivesim.data.synth import logs

        return getattr(logs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
