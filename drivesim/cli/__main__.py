"""`python -m drivesim.cli`: the `drivesim` command."""

import sys

from drivesim.cli import main

sys.exit(main())
