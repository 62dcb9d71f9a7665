"""Errors the package raises on bad input: each message says what is wrong and what to do."""


class EdgeScaError(Exception):
    """Base class: a problem the user can act on (the CLI prints it without a traceback)."""


class ImageError(EdgeScaError):
    """An image could not be read or decoded."""


class DataError(EdgeScaError):
    """An ISIC folder or its metadata is missing, malformed or inconsistent."""


class ModelError(EdgeScaError):
    """A model file is missing, unreadable, or does not match its manifest."""


class CameraError(EdgeScaError):
    """A camera is missing, unplugged, timing out or frozen."""
