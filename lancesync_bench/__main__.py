"""``python -m lancesync_bench`` runs the command line."""

import sys

from lancesync_bench.cli import main

sys.exit(main())
