import sys

from profiler.attach.cli import main

sys.exit(main())
