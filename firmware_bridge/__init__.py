"""Deploy bundle, flashing and the serial link to the scanner's dermoscope board (may import edge_sca only).

Kept import-free so that the Pi, which gets only link.py, protocol.py and errors.py, can import the package.
"""
