"""Suite-wide settings."""

from hypothesis import settings

# CI runs a fresh clone with no example database: derandomised, every run tries the same examples,
# so a red build means a change broke something, not that a new random draw was unlucky. Run with
# HYPOTHESIS_PROFILE=explore to search fresh examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)

import os  # noqa: E402

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
