"""`python -m edge_sca`: see edge_sca.cli."""

from edge_sca.cli import main

raise SystemExit(main())
