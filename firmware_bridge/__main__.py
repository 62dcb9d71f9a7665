"""`python -m firmware_bridge`: see cli.py."""

import sys

from firmware_bridge.cli import main

sys.exit(main())
