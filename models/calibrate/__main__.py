"""`python -m models.calibrate`: this machine's calibration as JSON (see models.calibrate.cli)."""
import sys

from .cli import main

sys.exit(main())
