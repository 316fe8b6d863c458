"""Import the model classes (torch, diffusers' UNet/VAE and single-file converters, transformers' CLIP) on a
background thread at process start, while the server builds its page.

The first ``UNet2DConditionModel`` through diffusers' lazy module costs 3.5-5.5 s on a 2-core CPU (it pulls in all
of ``diffusers.models.transformers``); paid inside the start-up load it made our load 3x diffusers'
``from_single_file``, whose caller has already imported the pipeline. Python's per-module import locks make a load
that starts meanwhile wait for the module it needs, never import it twice. Nothing here runs any model code.
"""

from __future__ import annotations

import importlib
import logging
import threading

log = logging.getLogger(__name__)

# In the order the start-up load needs them.
MODULES = (
    "torch",
    "safetensors.torch",
    "accelerate",
    "diffusers.models.unets.unet_2d_condition",
    "diffusers.models.autoencoders.autoencoder_kl",
    "diffusers.loaders.single_file_utils",
    "transformers.models.clip.modeling_clip",
    "modules.models.loader",
)

_lock = threading.Lock()
_thread: threading.Thread | None = None


def _run() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - the load that needs it reports the real error
            log.debug("background import of %s failed: %s", name, err)
            return


def start() -> threading.Thread:
    """Start the background imports once per process; returns the thread (``join()`` waits for them)."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_run, name="warm-imports", daemon=True)
            _thread.start()
        return _thread
