"""Deploy bundle, flashing and the serial link to the scanner's dermoscope board (may import edge_sca only).

Kept import-free: a scanner release carries only part of the package (the serial link and the scanner-side
installer, bundle.BRIDGE_FILES), and the installer runs on the scanner's system Python before its venv exists.
"""
