"""Image generation: typed parameters in, images and infotext out (no UI or web framework here).

A1111's names that extensions import from ``modules.processing`` (``StableDiffusionProcessingTxt2Img``,
``process_images``, ``Processed``, ...) resolve lazily to ``modules.processing.compat``, so importing a submodule
such as ``modules.processing.params`` stays cheap.
"""

from __future__ import annotations

from typing import Any

_COMPAT = {"StableDiffusionProcessing", "StableDiffusionProcessingTxt2Img", "StableDiffusionProcessingImg2Img",
           "process_images", "Processed", "PostprocessImageArgs", "PostprocessBatchListArgs", "fix_seed",
           "get_fixed_seed"}


def __getattr__(name: str) -> Any:
    if name in _COMPAT:
        from modules.processing import compat

        if name in ("fix_seed", "get_fixed_seed"):
            return compat.get_fixed_seed if name == "get_fixed_seed" else compat.fix_seed
        return getattr(compat, name)
    raise AttributeError(f"module 'modules.processing' has no attribute {name!r}")
