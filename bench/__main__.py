"""``python -m bench``: see :mod:`bench.cli`."""

import os
import sys

# OpenMP threads that spin while waiting make torch 10-20x slower whenever another
# process shares the cores (measured on 2 cores); passive waiting costs nothing when
# the machine is idle. Set before torch is imported; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
