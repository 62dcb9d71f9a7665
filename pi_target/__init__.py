"""The scanner in a box: an emulated Raspberry Pi OS target (aarch64 Debian under qemu-user) and the device
environment (one dependency list, per-target hashed locks, an offline wheelhouse) that is proven on it.

Workstation-side only: it builds roots from Debian's arm64 packages, runs them with qemu-user-static and drives
`make bundle` / `make flash` into them. It imports edge_sca (preprocessing, models) and never TensorFlow.
"""
