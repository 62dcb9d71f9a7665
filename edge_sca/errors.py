"""Errors the package raises on bad input: each message says what is wrong and what to do.

Each error carries the exit status the CLIs return for it (`ExitStatus`), so systemd can tell a problem that a
restart may cure (a camera or board that went away: HARDWARE) from one it cannot (a bad model or configuration:
ERROR, which the unit lists in RestartPreventExitStatus=).
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    FAILED = 1  # the command ran and its check failed (e.g. a self-test)
    ERROR = 2  # bad input, model or configuration: restarting will not help
    HARDWARE = 3  # a camera or board went away or does not answer: a restart may help
    INTERRUPTED = 130


class EdgeScaError(Exception):
    """Base class: a problem the user can act on (the CLI prints it without a traceback)."""

    exit_status: ExitStatus = ExitStatus.ERROR


class ImageError(EdgeScaError):
    """An image could not be read or decoded."""


class ImageTooLargeError(ImageError):
    """An image whose header (or file size) says decoding it would cost too much memory: refused unread."""


class DataError(EdgeScaError):
    """An ISIC folder or its metadata is missing, malformed or inconsistent."""


class ModelError(EdgeScaError):
    """A model file is missing, unreadable, or does not match its manifest."""


class CameraError(EdgeScaError):
    """A camera is missing, unplugged, timing out or frozen."""

    exit_status = ExitStatus.HARDWARE


class CameraConfigError(CameraError):
    """A camera that cannot work as configured (unknown spec, a replay folder without images or rows): a restart
    will not help, so it exits with ERROR, not HARDWARE."""

    exit_status = ExitStatus.ERROR


class ControllerLost(EdgeScaError):
    """The scanner's board went away (unplugged, powered off, not answering); the run loop reopens it."""

    exit_status = ExitStatus.HARDWARE
