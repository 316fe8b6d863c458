"""A1111's ``modules.upscaler`` for extensions: ``Upscaler``, ``UpscalerData`` and ``shared.sd_upscalers`` built
from the app's upscalers ("None", "Lanczos", "Nearest", then the model ones, as A1111 orders them).

Extensions index ``shared.sd_upscalers`` (Ultimate SD upscale's upscaler radio is ``type="index"``) and call
``data.scaler.upscale(image, scale, data.data_path)``; that runs our upscaler of that name, to A1111's size (the
scaled size rounded down to 8 pixels).
"""

from __future__ import annotations

from typing import Any

from PIL import Image

LANCZOS = Image.Resampling.LANCZOS
NEAREST = Image.Resampling.NEAREST


class Upscaler:
    """A1111's base class; an extension subclassing it provides ``do_upscale`` (its own model)."""

    name: str | None = None
    model_path: str | None = None
    model_name: str | None = None
    model_url: str | None = None
    enable = True
    filter = None
    model: Any = None
    user_path: str | None = None
    tile = True

    def __init__(self, create_dirs: bool = False) -> None:
        self.scalers: list[UpscalerData] = []
        self.mod_pad_h = None
        self.tile_size = 192
        self.tile_pad = 8

    def do_upscale(self, img: Image.Image, selected_model: Any) -> Image.Image:
        return img

    def upscale(self, img: Image.Image, scale: float, selected_model: Any = None) -> Image.Image:
        """``do_upscale`` until the image reaches ``scale`` times its size (rounded down to 8), then fitted."""
        dest_w, dest_h = max(int(img.width * scale // 8 * 8), 8), max(int(img.height * scale // 8 * 8), 8)
        for _ in range(3):
            if img.width >= dest_w and img.height >= dest_h:
                break
            bigger = self.do_upscale(img, selected_model)
            if bigger.size == img.size:
                break
            img = bigger
        return img.resize((dest_w, dest_h), resample=LANCZOS) if img.size != (dest_w, dest_h) else img

    def load_model(self, path: str) -> Any:
        return None

    def find_models(self, ext_filter: Any = None) -> list[str]:
        return []

    def update_status(self, prompt: str) -> None:
        print(f"\nextras: {prompt}", flush=True)


class UpscalerData:
    def __init__(self, name: str, path: str | None, upscaler: Upscaler | None = None, scale: float = 4,
                 model: Any = None, sha256: str | None = None) -> None:
        self.name = name
        self.data_path = path
        self.local_data_path = path
        self.scaler = upscaler
        self.scale = scale
        self.model = model
        self.sha256 = sha256

    def __repr__(self) -> str:
        return f"<UpscalerData name={self.name} path={self.data_path} scale={self.scale}>"


class _AppUpscaler(Upscaler):
    """One of the app's upscalers by name (the pixel filters and the model upscalers of ``models/``)."""

    def __init__(self, name: str, registry: Any) -> None:
        super().__init__()
        self.name = name
        self._registry = registry

    def upscale(self, img: Image.Image, scale: float, selected_model: Any = None) -> Image.Image:
        from modules.processing.postprocessing import upscale_once

        return upscale_once(img, self.name or "None", scale, self._registry)


class UpscalerNone(Upscaler):
    name = "None"


def app_upscalers(registry: Any) -> list[UpscalerData]:
    """``shared.sd_upscalers``: every upscaler the app offers, in the order of ``/sdapi/v1/upscalers``."""
    from modules.processing.postprocessing import upscaler_names

    infos = {info.name: info for info in registry.list()} if registry is not None else {}
    out = []
    for name in upscaler_names(registry):
        info = infos.get(name)
        path = str(info.path) if info is not None and info.path is not None else None
        out.append(UpscalerData(name, path, _AppUpscaler(name, registry), info.scale if info is not None else 4))
    return out
