"""`python -m evidence` runs the CLI."""

import sys

from evidence.cli import main

sys.exit(main())
