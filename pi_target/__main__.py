import sys

from pi_target.cli import main

sys.exit(main())
