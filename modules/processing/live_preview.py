"""Live previews: the picture a job shows every ``show_progress_every_n_steps`` steps, made by A1111's
``show_progress_type`` methods.

* ``Approx cheap`` - a linear map of the latent channels to RGB (the family's own; microseconds).
* ``Approx NN``    - A1111's VAE approximation network (``models/VAE-approx/model.pt``, SDXL: ``vaeapprox-sdxl.pt``):
  eight small convolutions, a picture at a quarter of the image's size.
* ``TAESD``        - madebyollin's tiny autoencoder decoder (``taesd_decoder.pth``, SDXL: ``taesdxl_decoder.pth``, in
  the same folder): the full size, close to the real VAE.
* ``Full``         - the checkpoint's own VAE. It runs in the job's thread at the preview step (the memory modes move
  the VAE and UNet in that thread only); under ``--medvram``/``--lowvram`` it is replaced by ``Approx NN`` unless
  ``live_preview_allow_lowvram_full``, as in A1111.

A method whose file is not there falls back to the next cheaper one (``Approx cheap`` always works) and the job's log
says which file to put where, once per file. The small networks are ours, written from their published layouts; they
load through the safe loader and stay in CPU memory (a preview every few steps of one image is cheap there), so
they never sit on the GPU beside a generation. Every method previews the denoised estimate of the last step, the
picture the job is heading to, not the noisy latents.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from modules.processing.sampling import decode_latents, to_pil

log = logging.getLogger(__name__)

FULL, APPROX_NN, APPROX_CHEAP, TAESD = "Full", "Approx NN", "Approx cheap", "TAESD"
METHODS = (FULL, APPROX_NN, APPROX_CHEAP, TAESD)
FALLBACK = {FULL: APPROX_NN, TAESD: APPROX_NN, APPROX_NN: APPROX_CHEAP}
FILES = {APPROX_NN: {"sd": "model.pt", "sdxl": "vaeapprox-sdxl.pt"},
         TAESD: {"sd": "taesd_decoder.pth", "sdxl": "taesdxl_decoder.pth"}}

Decode = Callable[[torch.Tensor], Any]  # the job's latents (B, C, h, w) -> a PIL image of the first one


@dataclass(frozen=True)
class Preview:
    method: str  # the method that runs (after any fallback)
    decode: Decode
    in_job_thread: bool = False  # made at the step, in the job's thread (Full), instead of when a page asks


# ---------------------------------------------------------------------------------------------------------------------
# The two small networks


class VAEApprox(nn.Module):
    """A1111's ``Approx NN``: latents upsampled 2x (nearest), padded by 11, eight valid convolutions each followed
    by a leaky ReLU (0.1); the output is an RGB picture in [-1, 1] at twice the latent size."""

    def __init__(self, latent_channels: int = 4) -> None:
        super().__init__()
        widths = (latent_channels, 8, 16, 32, 64, 32, 16, 8, 3)
        kernels = (7, 5, 3, 3, 3, 3, 3, 3)
        for i, k in enumerate(kernels):
            setattr(self, f"conv{i + 1}", nn.Conv2d(widths[i], widths[i + 1], k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, (x.shape[2] * 2, x.shape[3] * 2))
        x = F.pad(x, (11, 11, 11, 11))
        for i in range(8):
            x = F.leaky_relu(getattr(self, f"conv{i + 1}")(x), 0.1)
        return x


class _Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class _TinyBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(channels, channels), nn.ReLU(), _conv(channels, channels), nn.ReLU(),
                                  _conv(channels, channels))
        self.skip = nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.conv(x) + self.skip(x))


def _conv(n_in: int, n_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


def taesd_decoder(latent_channels: int = 4) -> nn.Sequential:
    """TAESD's decoder in the layout of its ``*_decoder.pth`` files (the Sequential's indices are the keys):
    a soft clamp, three stages of three 64-channel residual blocks each followed by a 2x upsample and a bias-free
    convolution, one more block and the RGB convolution; the output is a picture in [0, 1] at 8x the latent size."""
    layers: list[nn.Module] = [_Clamp(), _conv(latent_channels, 64), nn.ReLU()]
    for _stage in range(3):
        layers += [_TinyBlock(64), _TinyBlock(64), _TinyBlock(64), nn.Upsample(scale_factor=2),
                   _conv(64, 64, bias=False)]
    layers += [_TinyBlock(64), _conv(64, 3)]
    return nn.Sequential(*layers)


def load_network(method: str, path: Path) -> nn.Module:
    """The ``Approx NN`` or ``TAESD`` network from its file, checked against the layout (a wrong file is a clear
    ValueError naming it, not a load of random weights)."""
    from modules.controlnet.nets.hed import check_layout
    from modules.models.formats import load_state_dict

    state = load_state_dict(path)
    state = {k.removeprefix("decoder."): v for k, v in state.items()}  # some copies keep the autoencoder's prefix
    first = state.get("conv1.weight" if method == APPROX_NN else "1.weight")
    channels = int(first.shape[1]) if isinstance(first, torch.Tensor) and first.ndim == 4 else 4
    model = VAEApprox(channels) if method == APPROX_NN else taesd_decoder(channels)
    check_layout(path, state, {k: v.shape for k, v in model.state_dict().items()},
                 lambda p, why: ValueError(f"{p.name} is not a {method} live preview network: {why}"))
    model.load_state_dict(state, strict=True)
    return model.float().eval()


class PreviewNetworks:
    """The loaded preview networks, by file (one or two at most: a session uses one method on one latent space),
    and the missing-file messages already logged. The runtime keeps one."""

    def __init__(self, limit: int = 2) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, int, int], nn.Module] = {}
        self._limit = limit
        self._reported: set[str] = set()

    def get(self, method: str, path: Path) -> nn.Module:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key not in self._loaded:
                while len(self._loaded) >= self._limit:
                    self._loaded.pop(next(iter(self._loaded)))
                self._loaded[key] = load_network(method, path)
            return self._loaded[key]

    def report_once(self, message: str) -> None:
        with self._lock:
            if message in self._reported:
                return
            self._reported.add(message)
        log.warning(message)


# ---------------------------------------------------------------------------------------------------------------------
# Choosing the method for a job


def _network_decode(method: str, network: nn.Module) -> Decode:
    lock = threading.Lock()  # one network object serves every page that asks

    @torch.inference_mode()
    def decode(latents: torch.Tensor) -> Any:
        with lock:
            out = network(latents[:1].float().cpu())[0]
        return to_pil(out if method == APPROX_NN else out * 2 - 1)  # TAESD draws in [0, 1]

    return decode


def _full_decode(model: Any) -> Decode:
    def decode(latents: torch.Tensor) -> Any:
        return to_pil(decode_latents(model, latents[:1])[0])

    return decode


def choose(model: Any, method: str, approx_dir: Path | None, family_cheap: Decode, *,
           allow_lowvram_full: bool = False, networks: PreviewNetworks | None = None) -> Preview:
    """The preview for ``model`` with the ``show_progress_type`` ``method`` (an unknown name reads as Approx NN,
    A1111's default). ``family_cheap``: the family's Approx cheap. Approx NN and TAESD exist for the SD latent
    spaces; other families (Flux) use their cheap preview for them. ``networks``: the loaded ones to reuse."""
    from modules.models import memory

    networks = networks if networks is not None else PreviewNetworks()
    space = "sdxl" if getattr(model, "is_sdxl", False) else "sd"
    sd_like = getattr(getattr(model, "kind", None), "family", "sd1") in ("sd1", "sd2", "sdxl", "sdxl_refiner")
    method = method if method in METHODS else APPROX_NN
    while True:
        if method == APPROX_CHEAP:
            return Preview(APPROX_CHEAP, family_cheap)
        if method == FULL:
            plan = getattr(model, "extra", {}).get("memory")
            if getattr(plan, "mode", memory.NONE) == memory.NONE or allow_lowvram_full:
                return Preview(FULL, _full_decode(model), in_job_thread=True)
        elif sd_like and approx_dir is not None:
            path = approx_dir / FILES[method][space]
            if path.is_file():
                try:
                    return Preview(method, _network_decode(method, networks.get(method, path)))
                except (ValueError, OSError, RuntimeError) as err:
                    networks.report_once(f"live preview {method}: {err}; using {FALLBACK[method]}")
            else:
                networks.report_once(f"live preview {method} needs {path.name} in {approx_dir}; using "
                                     f"{FALLBACK[method]} until it is there")
        method = FALLBACK[method]
