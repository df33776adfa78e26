"""NullFace: training-free, localized face anonymization (Kung et al., FG 2026).

The engine has no ComfyUI imports. Main entry points:

- ``nullface.models.load_pipe``: SD1.5 + IP-Adapter FaceID from local files.
- ``nullface.identity``: ArcFace embeddings and their negation.
- ``nullface.pipeline``: encode, invert, sample, decode, and ``anonymize_face`` in one call.
- ``nullface.settings.NullFaceSettings``: the method's parameters (paper defaults).
"""

__version__ = "0.1.0"
