"""NullFace: training-free, localized face anonymization (Kung et al., FG 2026).

The engine has no ComfyUI imports. Main entry points:

- ``nullface.models.sd15.load_pipe``: SD1.5 + IP-Adapter FaceID from local files.
- ``nullface.faces.identity``: ArcFace embeddings and their negation.
- ``nullface.methods.nullface.pipeline``: encode, invert, sample, decode, and ``anonymize_face`` in one call.
- ``nullface.methods.nullface.settings.NullFaceSettings``: the method's parameters (paper defaults).
- ``nullface.methods.inpaint.pipeline``: the second method, SD1.5 inpainting with attribute guidance (papers/000):
  ``load_inpaint_pipe``, ``anonymize_inpaint``, ``inpaint_crop_anonymizer``; settings in
  ``nullface.methods.inpaint.settings.InpaintSettings``, the gradient correction in ``nullface.methods.inpaint.guidance``.
"""

__version__ = "0.1.0"
