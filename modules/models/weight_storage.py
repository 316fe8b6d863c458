"""The weight-storage choice (Forge's "Diffusion in Low Bits", setting ``forge_unet_storage_dtype``): how a Flux
transformer's Linear weights rest in memory. Torch-free, so the settings and the model manager can read it.

* Automatic: as the file stores them (fp8 stays fp8, GGUF blocks stay blocks; bf16/fp16/fp32 in the compute dtype).
* float8-e4m3fn / float8-e5m2: also the other Linear weights in that 8-bit float.
* Full precision (ours): everything expanded to the compute dtype at load (the fastest steps, the most memory).

Forge's "(fp16 LoRA)" forms apply LoRA unmerged in the compute dtype, which is what every layer kept compact does
here, so each means the same as its plain form.
"""

from __future__ import annotations

from typing import Any

AUTOMATIC = "Automatic"
FULL_PRECISION = "Full precision"
CHOICES = ("Automatic", "Automatic (fp16 LoRA)", "float8-e4m3fn", "float8-e4m3fn (fp16 LoRA)", "float8-e5m2",
           "float8-e5m2 (fp16 LoRA)", FULL_PRECISION)
FLOAT8 = ("float8-e4m3fn", "float8-e5m2")


def storage_mode(choice: Any) -> str:
    """A choice as "automatic", "full" or a float8 name (anything unknown: automatic)."""
    text = str(choice or AUTOMATIC).replace(" (fp16 LoRA)", "")
    if text == FULL_PRECISION:
        return "full"
    return text if text in FLOAT8 else "automatic"
