"""The UNet as the two noise predictors of the method: ε(x_t, c_id) and ε(x_t, ∅)."""
from __future__ import annotations

import numpy as np
import torch

from ...faces.identity import null_identity


class PipeDenoiser:
    """Calls the SD1.5 UNet with IP-Adapter FaceID identity tokens; counts sample-evaluations.

    The null path ∅ is the empty prompt with a zero identity vector through the adapter (the
    reference's definition). The conditional path uses c_id and the optional attribute prompt.
    """

    def __init__(self, pipe, identities: np.ndarray | None = None, prompt: str = "",
                 cond_scale: float = 1.0, null_scale: float = 1.0):
        self.pipe = pipe.ready()
        self.text_null = pipe.encode_prompt("")
        self.text_cond = pipe.encode_prompt(prompt)
        self.c_id = None if identities is None else torch.as_tensor(np.asarray(identities, np.float32))
        self.cond_scale = float(cond_scale)
        self.null_scale = float(null_scale)
        self.evals = 0

    def _unet(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, ids: torch.Tensor,
              scale: float) -> torch.Tensor:
        pipe = self.pipe
        pipe.set_ip_adapter_scale(scale)
        dt, dev = pipe.dtype, pipe.device
        embeds = ids.to(dev, dt)[:, None, :]                       # [N, 1 image, 512]
        with torch.no_grad():
            out = pipe.unet(x.to(dev, dt), t.to(dev), encoder_hidden_states=text.to(dev, dt),
                            added_cond_kwargs={"image_embeds": [embeds]}).sample
        self.evals += int(x.shape[0])
        return out.float().to(x.device)

    def null(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ε(x_t, ∅) for a batch whose rows may have different timesteps."""
        n = x.shape[0]
        zeros = torch.from_numpy(null_identity(n))
        return self._unet(x, t, self.text_null.expand(n, -1, -1), zeros, self.null_scale)

    def __call__(self, x: torch.Tensor, t: torch.Tensor,
                 null: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(ε(x_t, c_id), ε(x_t, ∅)); one batched UNet call when both paths share the adapter scale.
        With ``null`` (ε(x_t, ∅) already known) only the identity path is evaluated."""
        if self.c_id is None:
            raise ValueError("no identity condition was given to the denoiser")
        b = x.shape[0]
        c_id = self.c_id if self.c_id.shape[0] == b else self.c_id.expand(b, -1)
        if null is not None:
            return self._unet(x, t, self.text_cond.expand(b, -1, -1), c_id, self.cond_scale), null.to(x.device)
        zeros = torch.from_numpy(null_identity(b))
        text_c = self.text_cond.expand(b, -1, -1)
        text_0 = self.text_null.expand(b, -1, -1)
        if self.cond_scale == self.null_scale:
            eps = self._unet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([text_c, text_0]),
                             torch.cat([c_id, zeros]), self.cond_scale)
            return eps[:b], eps[b:]
        return (self._unet(x, t, text_c, c_id, self.cond_scale),
                self._unet(x, t, text_0, zeros, self.null_scale))
