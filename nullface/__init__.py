"""NullFace: training-free, localized face anonymization (Kung et al., FG 2026).

The engine has no ComfyUI imports. Main entry points:

- ``nullface.models.load_pipe``: SD1.5 + IP-Adapter FaceID from local files.
- ``nullface.identity``: ArcFace embeddings and their negation.
- ``nullface.pipeline``: encode, invert, sample, decode, and ``anonymize_face`` in one call.
- ``nullface.settings.NullFaceSettings``: the method's parameters (paper defaults).
- ``nullface.inpaint_pipeline``: the second method, SD1.5 inpainting with attribute guidance (papers/000):
  ``load_inpaint_pipe``, ``anonymize_inpaint``, ``inpaint_crop_anonymizer``; settings in
  ``nullface.inpaint.InpaintSettings``, the gradient correction in ``nullface.attribute_guidance``.
"""

__version__ = "0.1.0"
