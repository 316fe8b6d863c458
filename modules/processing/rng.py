"""A1111's random numbers: a seed means the same initial noise (and ancestral noise stream) as in A1111.

Per image i, one generator seeded with seed_i on the "RNG source" device (setting ``randn_source``):
* ``"GPU"``: the compute device (so CPU on a CPU-only machine; MPS falls back to CPU, as in A1111);
* ``"CPU"``: always the CPU (portable across machines);
* ``"NV"``: ``PhiloxGenerator``, a numpy re-implementation of NVIDIA's Philox4x32-10 + Box-Muller as torch's CUDA
  ``randn`` uses it, so CPU/Mac users get the noise a CUDA GPU would give.

Seeds: ``fix_seed`` turns -1/None/"" into a random seed; image i of a job gets ``seed + i`` unless a variation
strength is set (then every image keeps ``seed`` and the variation seeds step instead), as A1111 does.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch

SEED_MAX = 2**64 - 1  # what torch.manual_seed takes, and so A1111; its random seeds stay below 2**32
_RANDOM_SEED_BOUND = 4294967294  # A1111 draws int(random.randrange(4294967294))
RNG_SOURCES = ("GPU", "CPU", "NV")


# --------------------------------------------------------------------------------------------------------- seeds


def fix_seed(seed: int | str | None) -> int:
    """-1, None or "" -> a random seed in [0, 4294967293] (A1111's ``random.randrange(4294967294)``).

    Other values must lie in 0..2**64-1 (``ValueError`` otherwise): A1111 hands seeds to ``torch.manual_seed``,
    which takes that range."""
    if seed is None or (isinstance(seed, str) and not seed.strip()):
        seed = -1
    value = int(seed)
    if value == -1:
        return random.randrange(_RANDOM_SEED_BOUND)
    if not 0 <= value <= SEED_MAX:
        raise ValueError(f"seed must be -1 (random) or between 0 and {SEED_MAX}, got {value}")
    return value


def seeds_for_batch(seed: int, n: int, subseed_strength: float = 0.0) -> list[int]:
    """Seeds of a job's n images: seed + i; with a variation strength all images keep ``seed`` (A1111)."""
    return [seed + (i if subseed_strength == 0 else 0) for i in range(n)]


def subseeds_for_batch(subseed: int, n: int) -> list[int]:
    """Variation seeds of a job's n images: always subseed + i (A1111)."""
    return [subseed + i for i in range(n)]


# ------------------------------------------------------------------------------------------------- Philox ("NV")

_PHILOX_M0, _PHILOX_M1 = 0xD2511F53, 0xCD9E8D57  # Salmon et al. 2011, Philox4x32 multipliers
_PHILOX_W0, _PHILOX_W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments (golden ratio, sqrt(3) - 1)
_MASK32 = 0xFFFFFFFF
# curand's uniform mapping: u = x * 2**-32 + 2**-33 lies in (0, 1], never 0, so log(u) is finite. The constants are
# curand's float32 values; the arithmetic runs in float64 and rounds once at the end, as A1111's "NV" generator does.
_TWO_POW32_INV = float(np.float32(2.3283064e-10))
_TWO_POW32_INV_2PI = float(np.float32(2.3283064e-10 * 6.2831855))


def philox4x32_10(counter: np.ndarray, key: tuple[int, int], rounds: int = 10) -> np.ndarray:
    """Philox4x32 on a (4, N) uint32 counter block with a 64-bit key split (lo, hi); returns (4, N) uint32."""
    c0, c1, c2, c3 = (counter[i].astype(np.uint64) for i in range(4))
    k0, k1 = key
    for r in range(rounds):
        p0 = c0 * np.uint64(_PHILOX_M0)
        p1 = c2 * np.uint64(_PHILOX_M1)
        hi0, lo0 = p0 >> np.uint64(32), p0 & np.uint64(_MASK32)
        hi1, lo1 = p1 >> np.uint64(32), p1 & np.uint64(_MASK32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
        if r < rounds - 1:
            k0, k1 = (k0 + _PHILOX_W0) & _MASK32, (k1 + _PHILOX_W1) & _MASK32
    return np.stack([c0, c1, c2, c3]).astype(np.uint32)


class PhiloxGenerator:
    """``torch.randn(shape, device="cuda")`` after ``torch.manual_seed(seed)``, computed on the CPU.

    torch's CUDA normal kernel gives element ``i`` the first Box-Muller output of Philox block
    ``counter = (offset, 0, i, 0)`` under ``key = seed``; each call advances ``offset`` by one. That is exact while a
    tensor has no more elements than the GPU launches threads (true for per-image latents); A1111's "NV" source makes
    the same assumption, and this class reproduces its documented output.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.offset = 0

    def randn(self, shape: Sequence[int]) -> np.ndarray:
        n = int(np.prod(shape)) if len(shape) else 1
        if n >= 2**32:
            raise ValueError("PhiloxGenerator draws at most 2**32 - 1 numbers per call")
        counter = np.zeros((4, n), dtype=np.uint32)
        counter[0] = self.offset & _MASK32
        counter[1] = (self.offset >> 32) & _MASK32
        counter[2] = np.arange(n, dtype=np.uint32)
        self.offset += 1
        block = philox4x32_10(counter, (self.seed & _MASK32, self.seed >> 32))
        return _box_muller_sin(block[0], block[1]).reshape(tuple(shape))


def _box_muller_sin(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # torch keeps the sine branch of curand's Box-Muller pair for a lone element.
    u = x.astype(np.float64) * _TWO_POW32_INV + _TWO_POW32_INV / 2
    v = y.astype(np.float64) * _TWO_POW32_INV_2PI + _TWO_POW32_INV_2PI / 2
    return (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- noise


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from ``low`` (val=0) to ``high`` (val=1), A1111's variation-seed blend.

    As in A1111 the vectors are taken along dim 1 (for a (C, H, W) noise: each (c, :, w) column), and it falls back
    to a linear blend when they are nearly parallel (mean |cos| > 0.9995). A1111's fallback blends the other way
    round; the two agree whenever it can trigger (identical noises), so ours keeps the natural orientation."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.abs().mean() > 0.9995:
        return low * (1.0 - val) + high * val
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high


def _generator_device(source: str, device: torch.device) -> torch.device:
    if source == "CPU" or device.type == "mps":  # A1111: MPS randn is not reproducible, it uses the CPU
        return torch.device("cpu")
    return device


class ImageRNG:
    """Initial and ancestral noise for a batch, one independent stream per image (A1111's ``ImageRNG``).

    ``shape`` is one image's latent shape (C, H, W); ``seed_resize_from_h/w`` are pixel sizes (<= 0: off), divided
    by ``latent_factor``. ``first()`` gives the initial noise [B, C, H, W] on ``device`` (float32); afterwards, when
    ``eta_noise_seed_delta`` is set, each stream is re-seeded with seed + ENSD. ``next()`` draws each image's next
    noise (the ancestral stream); its first call returns ``first()``. Hand ``generators`` to ``scheduler.step`` so
    diffusers' ancestral/SDE noise comes from the same streams.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        seeds: list[int],
        subseeds: list[int] | None = None,
        subseed_strength: float = 0.0,
        seed_resize_from_h: int = 0,
        seed_resize_from_w: int = 0,
        source: str = "GPU",
        device: str | torch.device = "cpu",
        eta_noise_seed_delta: int = 0,
        latent_factor: int = 8,
    ) -> None:
        if source not in RNG_SOURCES:
            raise ValueError(f"unknown RNG source {source!r}; choose one of {', '.join(RNG_SOURCES)}")
        if len(shape) != 3:
            raise ValueError(f"shape is one image's latent (C, H, W), got {tuple(shape)}")
        self.shape = tuple(int(x) for x in shape)
        self.seeds = [int(s) for s in seeds]
        self.subseeds = None if subseeds is None else [int(s) for s in subseeds]
        self.subseed_strength = float(subseed_strength)
        self.seed_resize_from_h = int(seed_resize_from_h or 0)
        self.seed_resize_from_w = int(seed_resize_from_w or 0)
        self.source = source
        self.device = torch.device(device)
        self.eta_noise_seed_delta = int(eta_noise_seed_delta or 0)
        self.latent_factor = latent_factor
        self._gen_device = _generator_device(source, self.device)
        self._streams: list[torch.Generator | PhiloxGenerator] = []
        self.generators: list[torch.Generator] = []
        self._reseed(self.seeds)
        self.is_first = True

    def _reseed(self, seeds: list[int]) -> None:
        """One stream per image; ``generators`` are the torch generators handed to ``scheduler.step``.

        For "NV" the streams are Philox generators, which diffusers cannot take: ``generators`` are then CPU
        generators on the same seeds, so ancestral noise is reproducible but not the Philox stream A1111 uses (the
        initial noise is exact)."""
        self._streams = [self._stream(s) for s in seeds]
        if self.source == "NV":
            self.generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        else:
            self.generators = list(self._streams)  # type: ignore[arg-type]

    # A stream is a torch.Generator, or a PhiloxGenerator for "NV".
    def _stream(self, seed: int) -> torch.Generator | PhiloxGenerator:
        if self.source == "NV":
            return PhiloxGenerator(seed)
        return torch.Generator(self._gen_device).manual_seed(int(seed))

    def _randn(self, stream: torch.Generator | PhiloxGenerator, shape: tuple[int, ...]) -> torch.Tensor:
        if isinstance(stream, PhiloxGenerator):
            return torch.from_numpy(stream.randn(shape))
        return torch.randn(shape, generator=stream, device=self._gen_device, dtype=torch.float32)

    def _noise_shape(self) -> tuple[int, int, int]:
        if self.seed_resize_from_h <= 0 or self.seed_resize_from_w <= 0:
            return self.shape
        f = self.latent_factor
        return (self.shape[0], self.seed_resize_from_h // f, self.seed_resize_from_w // f)

    def first(self) -> torch.Tensor:
        self.is_first = False
        noise_shape = self._noise_shape()
        resized = noise_shape != self.shape
        xs = []
        for i, (seed, stream) in enumerate(zip(self.seeds, self._streams)):
            subnoise = None
            if self.subseeds is not None and self.subseed_strength != 0:
                subseed = self.subseeds[i] if i < len(self.subseeds) else 0
                subnoise = self._randn(self._stream(subseed), noise_shape)

            # With resize-from, the seed's noise is drawn at the old size from a fresh generator, while the image's
            # own stream draws a full-size noise that frames it (A1111 order, so later draws line up).
            noise = self._randn(self._stream(seed), noise_shape) if resized else self._randn(stream, self.shape)
            if subnoise is not None:
                noise = slerp(self.subseed_strength, noise, subnoise)
            if resized:
                noise = _paste_centered(noise, self._randn(stream, self.shape))
            xs.append(noise)

        if self.eta_noise_seed_delta:
            # wraps like torch's uint64 seed instead of failing mid-job for a seed near 2**64
            self._reseed([(s + self.eta_noise_seed_delta) & 0xFFFFFFFFFFFFFFFF for s in self.seeds])
        return torch.stack(xs).to(self.device)

    def next(self) -> torch.Tensor:
        if self.is_first:
            return self.first()
        return torch.stack([self._randn(s, self.shape) for s in self._streams]).to(self.device)


def _paste_centered(noise: torch.Tensor, canvas: torch.Tensor) -> torch.Tensor:
    """Centre ``noise`` (C, h, w) on ``canvas`` (C, H, W); a larger noise is centre-cropped (A1111's dx/dy)."""
    dx = (canvas.shape[2] - noise.shape[2]) // 2
    dy = (canvas.shape[1] - noise.shape[1]) // 2
    w = noise.shape[2] if dx >= 0 else noise.shape[2] + 2 * dx
    h = noise.shape[1] if dy >= 0 else noise.shape[1] + 2 * dy
    tx, ty = max(dx, 0), max(dy, 0)
    sx, sy = max(-dx, 0), max(-dy, 0)
    canvas[:, ty : ty + h, tx : tx + w] = noise[:, sy : sy + h, sx : sx + w]
    return canvas


ImageNoise = ImageRNG  # alias: both names are public
