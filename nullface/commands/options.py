"""What the CLI's method commands share: building objects from parsed arguments."""
from __future__ import annotations


def detector_from_args(args):
    """The face detector chosen by ``--detector``, ``--insightface-root`` and ``--score-threshold``."""
    from ..faces.detect import make_detector
    return make_detector(args.detector, model_dir=args.insightface_root, score_threshold=args.score_threshold)
