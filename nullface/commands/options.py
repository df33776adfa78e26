"""What the CLI's method commands share: building objects from parsed arguments."""
from __future__ import annotations


def detector_from_args(args):
    """The face detector chosen by ``--detector``, ``--insightface-root`` and ``--score-threshold``."""
    from ..faces.detect import make_detector
    return make_detector(args.detector, model_dir=args.insightface_root, score_threshold=args.score_threshold)


def audit_recognizers(args, arcface=None):
    """The audit's recognizers (``make_recognizers``), or None when the audit is off (``--no-audit``) or, by
    default, when no recognizer is installed; an explicit ``--audit`` without dlib is an error."""
    from ..errors import MissingDependencyError
    from ..privacy.audit import audit_unavailable, make_recognizers
    if getattr(args, "audit", None) is False:
        return None
    why = audit_unavailable()
    if why is not None:
        if getattr(args, "audit", None):
            raise MissingDependencyError(why)
        return None
    return make_recognizers(arcface, args.audit_threshold)
