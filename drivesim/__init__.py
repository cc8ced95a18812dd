"""drivesim: a multi-camera world simulator for autonomous driving."""

from drivesim.errors import DrivesimError

__version__ = "0.1.0"
__all__ = ["DrivesimError", "__version__"]
