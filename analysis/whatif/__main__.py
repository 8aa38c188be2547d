"""`python -m analysis.whatif`: see analysis.whatif.cli."""
import sys

from analysis.whatif.cli import main

sys.exit(main())
