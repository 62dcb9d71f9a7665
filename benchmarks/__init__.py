"""The on-device benchmark (`python -m benchmarks`, `python benchmarks/device_bench.py`, `make bench`): models,
end-to-end path, drift."""
