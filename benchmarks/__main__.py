"""`python -m benchmarks`: the on-device benchmark (see device_bench.py)."""

from benchmarks.device_bench import main

raise SystemExit(main())
