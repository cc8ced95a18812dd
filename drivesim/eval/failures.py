"""What recovering one frame pair's geometry may raise on degenerate input, and how reports name it.

OpenCV's solvers assert instead of returning nothing on some degenerate samples (opencv 5.x's
findEssentialMat fails in solvePoly on nearly identical points, where 4.x returned no model), and
which inputs trip which version changes between releases. So motion recovery treats any of these as
"this pair was not recovered", counts it, and goes on with the next pair.
"""

from __future__ import annotations

import numpy as np

__all__ = ["describe", "pair_failures"]


def pair_failures() -> tuple[type[Exception], ...]:
    """The exceptions that mean a frame pair's motion could not be recovered: cv2.error (any OpenCV
    version), LinAlgError from a singular matrix, and ValueError from the least-squares refinement
    (scipy refuses residuals that are not finite, as degenerate matches can make them)."""
    import cv2

    return (cv2.error, np.linalg.LinAlgError, ValueError)


def describe(error: BaseException) -> str:
    """One line naming the error: its type and the first non-empty line of its message."""
    kind = type(error)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{name}: {lines[0]}" if lines else name
