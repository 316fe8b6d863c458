"""Where a hires pass goes (A1111's "Upscale by" / "Resize width/height to" rule). No torch: the UI computes the
resolution line with it while the page is built, before any model library is loaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

LATENT_FACTOR = 8  # pixels per latent cell for every SD family's VAE


@dataclass(frozen=True)
class HiresTarget:
    """Where the hires pass goes: the upscaled latent size and how much to trim to reach an exact resize."""

    width: int  # upscaled size before trimming (pixels)
    height: int
    trim_x: int = 0  # latent cells to cut (Resize width/height to with another aspect ratio)
    trim_y: int = 0

    @classmethod
    def of(cls, p: Any) -> HiresTarget:
        """A1111's rule: Upscale by, or Resize to (one side 0 keeps the aspect ratio; both set cover, then crop)."""
        rx, ry = p.hr_resize_x, p.hr_resize_y
        if rx == 0 and ry == 0:
            return cls(int(p.width * p.hr_scale), int(p.height * p.hr_scale))
        if ry == 0:
            return cls(rx, rx * p.height // p.width)
        if rx == 0:
            return cls(ry * p.width // p.height, ry)
        if p.width / p.height < rx / ry:
            w, h = rx, rx * p.height // p.width
        else:
            w, h = ry * p.width // p.height, ry
        return cls(w, h, (w - rx) // LATENT_FACTOR, (h - ry) // LATENT_FACTOR)

    @property
    def latent_size(self) -> tuple[int, int]:
        return self.height // LATENT_FACTOR, self.width // LATENT_FACTOR

    def trim(self, latents: torch.Tensor) -> torch.Tensor:
        h, w = latents.shape[2], latents.shape[3]
        return latents[:, :, self.trim_y // 2:h - (self.trim_y + 1) // 2, self.trim_x // 2:w - (self.trim_x + 1) // 2]
