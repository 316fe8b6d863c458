"""Image generation: typed parameters in, images and infotext out (no UI or web framework here).

A1111's names that extensions import from ``modules.processing`` (``StableDiffusionProcessingTxt2Img``,
``process_images``, ``Processed``, ``create_infotext``, ``create_binary_mask``, ...) resolve lazily to
``modules.processing.compat``, so importing a submodule such as ``modules.processing.params`` stays cheap.
"""

from __future__ import annotations

from typing import Any

_COMPAT = {"StableDiffusionProcessing", "StableDiffusionProcessingTxt2Img", "StableDiffusionProcessingImg2Img",
           "process_images", "process_images_inner", "Processed", "PostprocessImageArgs", "PostprocessBatchListArgs",
           "fix_seed", "get_fixed_seed", "create_infotext", "create_binary_mask", "apply_overlay", "uncrop"}


def __getattr__(name: str) -> Any:
    if name in _COMPAT:
        from modules.processing import compat

        return getattr(compat, name)
    raise AttributeError(f"module 'modules.processing' has no attribute {name!r}")
