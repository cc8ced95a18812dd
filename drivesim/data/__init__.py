"""Logs in, clips out: synthetic and nuScenes logs, curation, the zarr clip store, and the torch
dataset over it. Importing this package stays light: ClipDataset and make_loader load torch on use."""

__all__ = ["ClipDataset", "make_loader"]


def __getattr__(name: str):
    # Lazy, so that ingest and store tools need not pay for importing torch.
    if name in __all__:
        from drivesim.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
