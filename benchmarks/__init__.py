"""The on-device benchmark (`python benchmarks/device_bench.py`, `make bench`): models, end-to-end path, drift."""
