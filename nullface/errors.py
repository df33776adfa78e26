"""Exceptions with messages a user can act on."""
from __future__ import annotations


class NullFaceError(Exception):
    """Base class for every error the engine raises on purpose."""


class InputError(NullFaceError, ValueError):
    """An image, mask or setting that the method cannot use as given."""


class ModelFileError(NullFaceError, FileNotFoundError):
    """A model file that is missing, corrupt or of the wrong kind.

    The message names the expected file, the folder searched and where to get it.
    """


class NoFaceError(NullFaceError):
    """No face was found where one was required."""


class FaceFailedError(NullFaceError):
    """A detected face could not be anonymized and the failure policy is ``error``."""


class MissingDependencyError(NullFaceError, ImportError):
    """An optional package needed for this feature is not installed."""


class Cancelled(BaseException):
    """The user stopped the run (e.g. ComfyUI's Cancel, raised from a progress callback).

    A ``BaseException`` like ``KeyboardInterrupt``: the per-face ``except Exception`` handlers must not
    turn a cancel into a failed face and apply its policy (blur, pixelate...) to the rest of the photo.
    """
