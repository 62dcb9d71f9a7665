"""Errors of the emulated target: each message names the problem and what to do."""

from edge_sca.errors import EdgeScaError


class PiTargetError(EdgeScaError):
    """The emulated Pi target cannot be built or run, or a check on it failed."""


class EmulatorUnavailable(PiTargetError):
    """qemu-user or binfmt_misc is missing and cannot be set up here (not root, no package manager)."""
