"""What recovering one frame pair's geometry may raise on degenerate input, and how reports name it.

OpenCV's solvers assert instead of returning nothing on some degenerate samples (opencv 5.x's
findEssentialMat fails in solvePoly on nearly identical points, where 4.x returned no model), and
which inputs trip which version changes between releases. So motion recovery treats any of these as
"this pair was not recovered", counts it, and goes on with the next pair.
"""

from __future__ import annotations

import numpy as np

from drivesim.errors import describe

__all__ = ["describe", "pair_failures"]  # describe: drivesim.errors', how reports name what OpenCV raised


def pair_failures() -> tuple[type[Exception], ...]:
    """The exceptions that mean a frame pair's motion could not be recovered: cv2.error (any OpenCV
    version), LinAlgError from a singular matrix, and ValueError from the least-squares refinement
    (scipy refuses residuals that are not finite, as degenerate matches can make them)."""
    import cv2

    return (cv2.error, np.linalg.LinAlgError, ValueError)
