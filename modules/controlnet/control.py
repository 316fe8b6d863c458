"""ControlNet in the denoising loop: per job the units' control maps, per pass the hint tensors and the loaded
ControlNets, per UNet evaluation the residuals the UNet adds to its skip connections and middle block.

The extension's semantics, written out:

* a unit runs while ``guidance_start <= step / steps <= guidance_end`` (``step`` counts model evaluations of the
  pass, as A1111's ``on_cfg_denoiser`` does), and not in the pass its ``hr_option`` excludes;
* its residuals are scaled by ``weight`` ("Balanced"), by ``weight * 0.825 ** (12 - i)`` for layer ``i`` ("My
  prompt is more important", and for canny in a hires pass), and "ControlNet is more important" also leaves the
  negative prompt's rows without control; ``advanced_weighting`` replaces the per-layer scales;
* ``effective_region_mask`` limits the residuals to a region;
* an inpainting map (RGBA) goes in as ``rgb * (1 - mask) - mask``; ``inpaint_only`` then keeps the unmasked part of
  the control image in the prediction, ``tile_colorfix`` keeps its colours (both blend with the unit's weight).

A unit with weight 0, or outside its range, adds nothing: it is not evaluated at all, so the image is exactly the
one without it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from modules.controlnet import hints
from modules.controlnet.annotator_files import AnnotatorSetup
from modules.controlnet.models import ControlNetCache, ControlNetRegistry, LoadedControlNet
from modules.errors import FieldError
from modules.controlnet.units import ControlMode, ControlUnit, HiresOption, UnionType

log = logging.getLogger(__name__)

SOFT_BASE = 0.825


def layer_scales(unit: ControlUnit, layers: int, soft: bool) -> list[float]:
    """The scale of each of the ControlNet's ``layers`` outputs (down blocks first, middle last)."""
    if unit.advanced_weighting is not None:
        scales = list(unit.advanced_weighting)
        if len(scales) < layers:
            scales += [unit.weight] * (layers - len(scales))
        return scales[:layers]
    if soft:
        return [unit.weight * SOFT_BASE ** float(12 - i) for i in range(13)][:layers] + \
            [unit.weight] * max(0, layers - 13)
    return [unit.weight] * layers


ADAPTER_SOFT = (0.25, 0.62, 0.825, 1.0)  # the extension's soft weights of a T2I-Adapter's four levels


def adapter_scales(unit: ControlUnit, levels: int, soft: bool) -> list[float]:
    """The scale of each of a T2I-Adapter's feature levels."""
    if unit.advanced_weighting is not None:
        return [*unit.advanced_weighting, *[unit.weight] * levels][:levels]
    if soft:
        return [unit.weight * s for s in ADAPTER_SOFT][:levels] + [unit.weight] * max(0, levels - 4)
    return [unit.weight] * levels


def to_tensor(control_map: np.ndarray) -> torch.Tensor:
    """uint8 HWC -> float (1, C, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(control_map)).float().div(255.0).permute(2, 0, 1)[None]


@dataclass
class UnitPass:
    """One unit in one pass: its ControlNet and its hint at the pass's size."""

    unit: ControlUnit
    net: LoadedControlNet
    hint: torch.Tensor  # (1, C, H, W) in [0, 1], C = 4 for inpainting (alpha = mask)
    region: torch.Tensor | None = None  # (1, 1, H, W) in [0, 1]
    origin: torch.Tensor | None = None  # latents of the control image (inpaint_only, tile_colorfix)
    soft: bool = False
    _features: list[torch.Tensor] | None = field(default=None, repr=False)  # a T2I-Adapter's, made once
    _on_device: torch.Tensor | None = field(default=None, repr=False)  # the model's hint on the net's device

    def runs_at(self, fraction: float) -> bool:
        u = self.unit
        return u.guidance_start <= fraction <= u.guidance_end

    def device_hint(self) -> torch.Tensor:
        """The hint as the ControlNet takes it, on its device and dtype (made once a pass)."""
        if self._on_device is None:
            self._on_device = self.model_hint().to(self.net.device, self.net.dtype)
        return self._on_device

    def adapter_features(self) -> list[torch.Tensor]:
        """A T2I-Adapter's features: from the hint alone, so made once per pass (one row each)."""
        if self._features is None:
            net = self.net
            hint = self.device_hint()
            if net.net.config.in_channels == 1:  # sketch/canny adapters read one channel
                hint = hint[:, :1]
            with torch.inference_mode():
                self._features = list(net.net(hint))
        return self._features

    def model_hint(self) -> torch.Tensor:
        if self.hint.shape[1] == 4:  # the ControlNet inpainting protocol: masked pixels are -1
            rgb, mask = self.hint[:, :3], (self.hint[:, 3:4] > 0.5).to(self.hint.dtype)
            return rgb * (1 - mask) - mask
        return self.hint


class ControlPass:
    """The units of one denoising pass; called by ``GuidedDenoiser`` around each UNet evaluation."""

    def __init__(self, units: Sequence[UnitPass], prediction: str = "epsilon") -> None:
        self.units = list(units)
        self.prediction = prediction
        self.evaluations = 0  # ControlNet evaluations done (benchmarks, tests)

    def residuals(self, x: torch.Tensor, t: Any, context: torch.Tensor, added: dict[str, Any] | None,
                  cond_rows: int, fraction: float) -> dict[str, Any] | None:
        """The UNet's extra arguments for the units running now: the ControlNets' summed down and mid residuals
        (``down_block_additional_residuals``, ``mid_block_additional_residual``) and the T2I-Adapters' summed
        features (``down_intrablock_additional_residuals``); None when no unit runs."""
        total_down: list[torch.Tensor] | None = None
        total_mid: torch.Tensor | None = None
        total_features: list[torch.Tensor] | None = None
        rows = x.shape[0]
        for up in self.units:
            if not up.runs_at(fraction):
                continue
            net = up.net
            if net.is_adapter:
                features = [f.expand(rows, -1, -1, -1) for f in up.adapter_features()]
                scaled = self._scaled(up, features, rows, cond_rows, adapter=True)
                total_features = scaled if total_features is None else [a + b for a, b in
                                                                        zip(total_features, scaled)]
                continue
            # "ControlNet is more important" gives the negative prompt's rows no control: they are not evaluated
            used = cond_rows if up.unit.control_mode == ControlMode.CONTROL else rows
            if used == 0:
                continue
            hint = up.device_hint().expand(used, -1, -1, -1)
            kwargs: dict[str, Any] = {}
            if added is not None and getattr(net.net.config, "addition_embed_type", None) == "text_time":
                kwargs["added_cond_kwargs"] = {k: v[:used].to(net.device, net.dtype) for k, v in added.items()}
            if net.union_types:  # the model is told the control type (a one-hot row per batch row)
                kind = list(UnionType).index(up.unit.union_type)
                types = torch.zeros(used, net.union_types, device=net.device, dtype=net.dtype)
                types[:, kind] = 1
                kwargs.update(controlnet_cond=[hint], control_type=types, control_type_idx=[kind])
            else:
                kwargs.update(controlnet_cond=hint)
            down, mid = net.net(x[:used, :4].to(net.device, net.dtype), t, encoder_hidden_states=context[:used].to(
                net.device, net.dtype), conditioning_scale=1.0, return_dict=False, **kwargs)
            self.evaluations += 1
            outputs = [*down, mid]
            if used < rows:  # zeros for the rows left out
                outputs = [torch.cat([o, o.new_zeros((rows - used, *o.shape[1:]))]) for o in outputs]
            scaled = self._scaled(up, outputs, rows, cond_rows, adapter=False)
            if total_down is None or total_mid is None:
                total_down, total_mid = scaled[:-1], scaled[-1]
            else:
                total_down = [a + b for a, b in zip(total_down, scaled[:-1])]
                total_mid = total_mid + scaled[-1]
        out: dict[str, Any] = {}
        if total_down is not None and total_mid is not None:
            out.update(down_block_additional_residuals=total_down, mid_block_additional_residual=total_mid)
        if total_features is not None:
            out["down_intrablock_additional_residuals"] = total_features
        return out or None

    @staticmethod
    def _scaled(up: UnitPass, outputs: list[torch.Tensor], rows: int, cond_rows: int,
                adapter: bool) -> list[torch.Tensor]:
        """Outputs times their layer scales; "ControlNet is more important" zeroes the negative prompt's rows;
        the effective region mask limits them to a region."""
        scales = adapter_scales(up.unit, len(outputs), up.soft) if adapter else \
            layer_scales(up.unit, len(outputs), up.soft)
        scaled = [o * s for o, s in zip(outputs, scales)]
        if up.unit.control_mode == ControlMode.CONTROL and cond_rows < rows:
            keep = torch.zeros(rows, 1, 1, 1, device=scaled[0].device, dtype=scaled[0].dtype)
            keep[:cond_rows] = 1
            scaled = [o * keep for o in scaled]
        if up.region is not None:
            scaled = [o * torch.nn.functional.interpolate(up.region.to(o.device, o.dtype), size=o.shape[-2:],
                                                          mode="bilinear") for o in scaled]
        return scaled

    def after_unet(self, x_in: torch.Tensor, out: torch.Tensor, sigma: float | None,
                   fraction: float, cond_rows: int | None = None) -> torch.Tensor:
        """``inpaint_only`` and ``tile_colorfix``: the prediction's denoised image corrected towards the control
        image (outside the mask / in its low frequencies), blended by the unit's weight. ``+sharp`` also blurs
        the negative prompt's rows (the first ``cond_rows`` rows are the prompt's) by its sharpness."""
        for up in self.units:
            name = up.unit.module
            if up.origin is None or not up.runs_at(fraction) or sigma is None or sigma <= 0:
                continue
            if not (name == "inpaint_only" or name.startswith("tile_colorfix")):
                continue
            x_t = x_in[:, :4].float()
            x0 = _x0(x_t, out, sigma, self.prediction)
            origin = up.origin.to(x0.device).expand_as(x0)
            if name == "inpaint_only":
                mask = torch.nn.functional.max_pool2d(up.hint[:, 3:4].float(), (10, 10), stride=(8, 8), padding=1)
                mask = torch.nn.functional.interpolate(mask, size=x0.shape[-2:]).to(x0.device)
                corrected = x0 * mask + origin * (1 - mask)
            else:
                k = int(up.unit.threshold_a)
                corrected = x0 - _blur(x0, k) + _blur(origin, k)
                if name.endswith("+sharp"):
                    detail = float(up.unit.threshold_b) * 0.01
                    blurred = detail * _blur(corrected, k) + (1 - detail) * corrected
                    rows = corrected.shape[0] if cond_rows is None else cond_rows
                    corrected = torch.cat([corrected[:rows], blurred[rows:]])
            w = max(0.0, min(1.0, float(up.unit.weight)))
            out = _from_x0(x_t, corrected, sigma, self.prediction) * w + out * (1 - w)
        return out


def _x0(x_t: torch.Tensor, out: torch.Tensor, sigma: float, prediction: str) -> torch.Tensor:
    """The denoised latents an output predicts, in the variance-preserving space of the UNet input
    (``x_t = (x0 + sigma * eps) / sqrt(1 + sigma^2)``)."""
    s = (1.0 + sigma * sigma) ** 0.5
    if prediction == "v_prediction":
        return x_t / s - out * (sigma / s)
    return x_t * s - out * sigma


def _from_x0(x_t: torch.Tensor, x0: torch.Tensor, sigma: float, prediction: str) -> torch.Tensor:
    s = (1.0 + sigma * sigma) ** 0.5
    if prediction == "v_prediction":
        return (x_t / s - x0) * (s / sigma)
    return (x_t * s - x0) / sigma


def _blur(x: torch.Tensor, k: int) -> torch.Tensor:
    y = torch.nn.functional.pad(x, (k, k, k, k), mode="replicate")
    return torch.nn.functional.avg_pool2d(y, (k * 2 + 1, k * 2 + 1), stride=(1, 1))


# ---------------------------------------------------------------------------------------------------------------------
# The job's side: maps once, passes on demand


WORKING_MARGIN = 2 * 1024 ** 3  # what a job still needs beside a resident ControlNet (SD1.5 fp16 estimate)


def needs_offload(unit: ControlUnit, model: Any, path: Path) -> bool:
    """Whether the ControlNet's weights stay in CPU memory (brought in layer by layer): the unit's Low VRAM, the
    checkpoint's ``--lowvram``, or a GPU whose free memory cannot hold the weights (the file's size, halved in
    fp16) plus a job's working memory. The memory modes count the ControlNet this way."""
    from modules.models import memory

    plan = getattr(model, "extra", {}).get("memory")
    if unit.low_vram or getattr(plan, "mode", None) == memory.LOWVRAM:
        return True
    free = memory.free_bytes(model.device)
    if free is None:  # the CPU, Apple's unified memory: nothing to gain
        return False
    weights = path.stat().st_size // (2 if model.dtype in (torch.float16, torch.bfloat16) else 1)
    if free < weights + WORKING_MARGIN:
        log.info("ControlNet %s: %d MiB free on %s, offloading its weights", path.name, free // 2**20, model.device)
        return True
    return False


@dataclass
class ControlMaps:
    """A unit's maps for one job: what it works from and the preprocessor's output (made once)."""

    unit: ControlUnit
    source: hints.ControlInput
    detected: np.ndarray


@dataclass
class ControlJob:
    """The ControlNet units of one job. ``for_pass`` makes a pass's ``ControlPass`` (maps fitted to its size,
    ControlNets loaded from the cache), its units built once for all the job's batches; ``shown_maps`` are the
    fitted maps in the extension's order."""

    units: list[ControlUnit]
    registry: ControlNetRegistry
    cache: ControlNetCache
    cache_size: int = 2
    init_image: Any = None  # img2img's prepared picture and mask (``use_img2img``)
    init_mask: Any = None
    hires: bool = False  # the job has a hires pass (``hr_option`` matters)
    seed: int = 0
    annotators: AnnotatorSetup = AnnotatorSetup()  # the weighted preprocessors' folders and device
    crop_box: tuple[int, int, int, int] | None = None  # img2img "only masked": the region of the init image
    init_size: tuple[int, int] | None = None  # the init image's size (units' images of that size are cropped too)
    _maps: list[ControlMaps] | None = None
    _fitted: dict[tuple[int, bool], np.ndarray] = field(default_factory=dict)  # (unit, hires pass) -> map
    _passes: dict[tuple[Any, ...], list[UnitPass]] = field(default_factory=dict)  # a pass's units, once a job

    @property
    def active(self) -> list[ControlUnit]:
        return [u for u in self.units if u.active]

    def infotext(self) -> dict[str, str]:
        """``ControlNet N`` entries, numbered over the enabled units as the extension numbers them."""
        enabled = [u for u in self.units if u.enabled]
        return {f"ControlNet {i}": u.infotext() for i, u in enumerate(enabled)}

    def use_img2img(self, image: Any, mask: Any, crop_box: tuple[int, int, int, int] | None,
                    init_size: tuple[int, int]) -> None:
        """img2img's prepared picture (at the processing size, the "only masked" crop) and mask take the place
        of the raw init image: a unit without an image works from exactly what is sampled, as in the
        extension; a unit image of the init image's size is cropped to the same region."""
        self.init_image, self.init_mask = image, mask
        self.crop_box, self.init_size = crop_box, init_size

    def _cropped(self, unit: ControlUnit) -> ControlUnit:
        if self.crop_box is None or unit.image is None or unit.image.size != self.init_size:
            return unit
        from dataclasses import replace

        mask = unit.mask.crop(self.crop_box) if unit.mask is not None and unit.mask.size == self.init_size \
            else unit.mask
        return replace(unit, image=unit.image.crop(self.crop_box), mask=mask)

    def maps(self, width: int, height: int) -> list[ControlMaps]:
        """The units' detected maps, made at the first pass's size (pixel perfect), once per job."""
        if self._maps is None:
            rng = np.random.default_rng(self.seed)
            self._maps = []
            for unit in self.active:
                unit = self._cropped(unit)
                source = hints.choose_input(unit, self.init_image, self.init_mask)
                detected = hints.detect(unit, source, height, width, rng, self.annotators)
                self._maps.append(ControlMaps(unit, source, detected))
        return self._maps

    def shown_maps(self) -> list[np.ndarray]:
        """The maps the job returns after its images: per unit (that saves them) the hires pass's, then the first
        pass's, as the extension appends them."""
        out = []
        for i, maps in enumerate(self._maps or []):
            if maps.unit.save_detected_map:
                out += [hints.visible_map(self._fitted[(i, h)]) for h in (True, False) if (i, h) in self._fitted]
        return out

    def for_pass(self, model: Any, width: int, height: int, hires_pass: bool,
                 encode: Callable[[torch.Tensor], torch.Tensor] | None, first_size: tuple[int, int]) -> ControlPass:
        key = (hires_pass, width, height, id(model))
        if key not in self._passes:  # the first batch builds them; the others reuse hints, nets and latents
            self._passes[key] = [self._unit_pass(i, maps, model, width, height, hires_pass, encode)
                                 for i, maps in enumerate(self.maps(*first_size))
                                 if self._runs_in(maps.unit, hires_pass)]
        return ControlPass(self._passes[key], getattr(getattr(model, "kind", None), "prediction", "epsilon"))

    def _runs_in(self, unit: ControlUnit, hires_pass: bool) -> bool:
        """``hr_option``, which only matters when the job has a hires pass."""
        if not self.hires:
            return True
        return not (unit.hr_option == HiresOption.LOW_RES_ONLY and hires_pass
                    or unit.hr_option == HiresOption.HIGH_RES_ONLY and not hires_pass)

    def _unit_pass(self, i: int, maps: ControlMaps, model: Any, width: int, height: int, hires_pass: bool,
                   encode: Callable[[torch.Tensor], torch.Tensor] | None) -> UnitPass:
        unit = maps.unit
        fitted = self._fitted[(i, hires_pass)] = hints.fit(maps.detected, maps.source.resize_mode, height, width)
        file = self.registry.resolve(unit.model, f"{unit.where}.model")
        net = self.cache.get(file, model.unet, model.kind.family, model.device, model.dtype, f"{unit.where}.model",
                             limit=self.cache_size, offload=needs_offload(unit, model, file.path))
        if net.union_types and (unit.union_type == UnionType.UNKNOWN
                                or list(UnionType).index(unit.union_type) >= net.union_types):
            raise FieldError(f"{unit.where}.union_control_type",
                             f"{file.title} is a ControlNet Union model: it needs the control type, and the "
                             f"{unit.preprocessor.label} preprocessor does not imply one this model knows",
                             [t.value for t in list(UnionType)[:net.union_types]])
        hint = to_tensor(fitted)
        region = None
        if unit.effective_region_mask is not None:
            region = to_tensor(np.asarray(unit.effective_region_mask.convert("L"))[:, :, None])
        origin = None
        if encode is not None and (unit.module == "inpaint_only" or unit.module.startswith("tile_colorfix")):
            origin = encode(hint[:, :3] * 2.0 - 1.0)
        soft = unit.control_mode != ControlMode.BALANCED or (hires_pass and unit.preprocessor.soft_in_hires)
        return UnitPass(unit, net, hint, region, origin, soft)
