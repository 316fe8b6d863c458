"""The denoising loop: our own, over a diffusers UNet and a diffusers scheduler.

A readable fixed sequence (scale input, predict with classifier-free guidance, scheduler step, report progress) that
later features hook into per step (prompt editing, composable diffusion, extension callbacks). Plus VAE decoding with
A1111's automatic fp32 fallback when fp16 decoding yields NaNs, and the cheap latent->RGB live preview.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from modules.models.types import LoadedModel
from modules.processing import schedulers
from modules.processing.cfg_callbacks import (AfterCFGCallbackParams, CfgCallbacks, CFGDenoisedParams,
                                                CFGDenoiserParams, ExtraNoiseParams)
from modules.processing.conditioning import Conditioning
from modules.processing.hires import LATENT_FACTOR
from modules.processing.prompt_schedule import BatchConditioning, repeat_per_subprompt
from modules.processing.progress import Interrupted, JobProgress

log = logging.getLogger(__name__)


class NansError(RuntimeError):
    """The model produced NaNs: a clear error instead of a black image saved as a success."""


StepHook = Callable[[int, Conditioning, Conditioning], None]



class GuidedDenoiser:
    """UNet call with classifier-free guidance and composable diffusion for one batch.

    Every model evaluation advances ``step`` (A1111's denoiser counter), which picks the conditioning in effect
    (prompt editing, alternation). Each image's ``AND`` sub-prompts are evaluated as separate rows and combined as
    ``uncond + sum(w_i * cfg * (cond_i - uncond))``. Cond and uncond share one UNet batch when their token lengths
    agree, otherwise they run separately (as A1111 does by default, so results do not depend on padding).
    ``hooks`` are called before each evaluation with (step, cond, uncond), like A1111's ``on_cfg_denoiser``.
    """

    def __init__(self, model: LoadedModel, conditioning: BatchConditioning, cfg_scale: float,
                 time_ids: torch.Tensor | None = None, neg_time_ids: torch.Tensor | None = None,
                 image_conditioning: torch.Tensor | None = None, hooks: Sequence[StepHook] = (),
                 cfg_callbacks: CfgCallbacks | None = None, s_min_uncond: float = 0.0,
                 control: Any = None, network: Callable[..., torch.Tensor] | None = None) -> None:
        self.model = model
        # the family's network call (x, t, conditioning, kwargs) -> prediction; SD's UNet by default
        self.network = network or _unet_call(model)
        self.control = control  # controlnet.control.ControlPass: residuals added to each UNet evaluation
        self.s_min_uncond = float(s_min_uncond)  # NGMS (A1111): see ``_skips_uncond``
        self.sigma: float | None = None  # the noise level of the evaluation, set by ``denoise``
        self.conditioning = conditioning
        self.cfg_scale = float(cfg_scale)
        self.time_ids, self.neg_time_ids = time_ids, neg_time_ids
        self.image_conditioning = image_conditioning
        self.hooks = list(hooks)
        self.cfg_callbacks = cfg_callbacks
        self.step = 0
        self._evaluating = 0  # the step of the evaluation under way (ControlNet's guidance range reads it)
        self.total_steps = 0  # evaluations of the pass, set by ``denoise`` (the callbacks' total_sampling_steps)
        self.rows = 0  # UNet rows evaluated so far (the step timings for the cost model count them)

    def _unet(self, x: torch.Tensor, t: Any, c: Conditioning, time_ids: torch.Tensor | None,
              image_conditioning: torch.Tensor | None, cond_rows: int) -> torch.Tensor:
        """One UNet evaluation; the first ``cond_rows`` rows are the prompt's, the rest the negative prompt's."""
        kwargs: dict[str, Any] = {}
        if c.pooled is not None:
            kwargs["added_cond_kwargs"] = {"text_embeds": c.pooled, "time_ids": time_ids}
        x_latent = x
        if image_conditioning is not None:
            x = torch.cat([x, image_conditioning.to(x.dtype)], dim=1)
        dtype = self.model.dtype
        self.rows += int(x.shape[0])
        fraction = self._evaluating / self.total_steps if self.total_steps else 0.0
        if self.control is not None:
            residuals = self.control.residuals(x_latent.to(dtype), t, c.context, kwargs.get("added_cond_kwargs"),
                                               cond_rows, fraction)
            for name, value in (residuals or {}).items():  # ControlNet residuals, T2I-Adapter features
                kwargs[name] = [r.to(dtype) for r in value] if isinstance(value, list) else value.to(dtype)
        out = self.network(x.to(dtype), t, c, kwargs).to(torch.float32)
        if self.control is not None:
            out = self.control.after_unet(x_latent, out, self.sigma, fraction, cond_rows)
        return out

    def _per_row(self, value: torch.Tensor | None, weights: list[list[float]]) -> torch.Tensor | None:
        return None if value is None else repeat_per_subprompt(value, weights)

    def __call__(self, x: torch.Tensor, t: Any) -> torch.Tensor:
        cond, uncond = self.conditioning.at(self.step)
        for hook in self.hooks:
            hook(self.step, cond, uncond)
        callbacks, step = self.cfg_callbacks, self.step
        if callbacks is not None and callbacks.denoiser is not None:
            params = CFGDenoiserParams(x, self.image_conditioning, t, step, self.total_steps, cond.context,
                                       uncond.context, self)
            callbacks.denoiser(params)
            x = _same_shape(params.x, x, "x")
            cond = Conditioning(_same_shape(params.text_cond, cond.context, "text_cond"), cond.pooled)
            uncond = Conditioning(_same_shape(params.text_uncond, uncond.context, "text_uncond"), uncond.pooled)
        self._evaluating = step
        self.step += 1
        out = self._cond_only(x, t, cond) if self._skips_uncond(step) else self._guided(x, t, cond, uncond)
        if callbacks is not None and callbacks.after_cfg is not None:
            after = AfterCFGCallbackParams(out, step, self.total_steps)
            callbacks.after_cfg(after)
            out = _same_shape(after.x, out, "x")
        return out

    def _skips_uncond(self, step: int) -> bool:
        """A1111's "Negative Guidance minimum sigma": below ``s_min_uncond``, every second evaluation (odd steps)
        runs the prompt alone, without the negative prompt, saving that half of the UNet batch. Only for plain
        prompts (no AND), where the prompt's prediction alone is what A1111 returns then."""
        return (self.s_min_uncond > 0 and step % 2 == 1 and self.sigma is not None
                and self.sigma < self.s_min_uncond and self.conditioning.is_plain)

    def _cond_only(self, x: torch.Tensor, t: Any, cond: Conditioning) -> torch.Tensor:
        return self._unet(x, t, cond, self.time_ids, self.image_conditioning, x.shape[0])

    def _guided(self, x: torch.Tensor, t: Any, cond: Conditioning, uncond: Conditioning) -> torch.Tensor:
        weights = self.conditioning.weights
        ic = self.image_conditioning
        x_c = repeat_per_subprompt(x, weights)
        ids_c, ic_c = self._per_row(self.time_ids, weights), self._per_row(ic, weights)
        if self.cfg_scale == 1.0 and self.conditioning.is_plain:  # guidance 1 is the cond prediction alone
            return self._unet(x_c, t, cond, ids_c, ic_c, x_c.shape[0])
        if cond.context.shape[1:] == uncond.context.shape[1:]:
            both = Conditioning(torch.cat([cond.context, uncond.context]),
                                None if cond.pooled is None else torch.cat([cond.pooled, uncond.pooled]))
            ids = None if self.time_ids is None else torch.cat([ids_c, self.neg_time_ids])
            ic_both = None if ic is None else torch.cat([ic_c, ic])
            pred = self._unet(torch.cat([x_c, x]), t, both, ids, ic_both, x_c.shape[0])
            pred_c, pred_u = pred[:x_c.shape[0]], pred[x_c.shape[0]:]
        else:
            pred_c = self._unet(x_c, t, cond, ids_c, ic_c, x_c.shape[0])
            pred_u = self._unet(x, t, uncond, self.neg_time_ids, ic, 0)
        if self.cfg_callbacks is not None and self.cfg_callbacks.denoised is not None:
            denoised = CFGDenoisedParams(pred_c, self.step - 1, self.total_steps, self.model)
            self.cfg_callbacks.denoised(denoised)
            pred_c = _same_shape(denoised.x, pred_c, "x")
        out = pred_u.clone()
        row = 0
        for i, item_weights in enumerate(weights):
            for w in item_weights:
                out[i] += w * self.cfg_scale * (pred_c[row] - pred_u[i])
                row += 1
        return out


def _unet_call(model: LoadedModel) -> Callable[..., torch.Tensor]:
    def call(x: torch.Tensor, t: Any, c: Conditioning, kwargs: dict[str, Any]) -> torch.Tensor:
        return model.unet(x, t, encoder_hidden_states=c.context, return_dict=False, **kwargs)[0]

    return call


def _same_shape(new: Any, old: torch.Tensor, name: str) -> torch.Tensor:
    """A callback's replacement tensor, refused when its shape differs (it would fail deep in the UNet)."""
    if new is old:
        return old
    if not isinstance(new, torch.Tensor) or new.shape != old.shape:
        raise ValueError(f"a sampling callback replaced {name} with a {type(new).__name__} of another shape")
    return new


def denoise(scheduler: Any, denoiser: GuidedDenoiser, latents: torch.Tensor, generators: list[torch.Generator],
            progress: JobProgress, steps_display: int,
            after_step: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
            seeds: list[int] | None = None, start: int = 0, step_offset: int = 0) -> tuple[torch.Tensor, bool]:
    """Run the scheduler's timesteps from index ``start`` (img2img begins part-way, see ``img2img_start``).
    Returns (latents, completed); completed is False after a skip request.

    ``generators`` feed step noise (ancestral/SDE samplers); ``seeds`` (the batch's image seeds) seed DPM++ SDE's
    Brownian tree, which would otherwise draw a random seed and make the image irreproducible. ``after_step(i, x)``
    may replace the latents after step ``i`` (inpainting puts the unmasked area back). Progress shows
    ``step_offset`` + the pass's step out of ``steps_display`` (a hires pass continues the first pass's count)."""
    step_kwargs: dict[str, Any] = {"return_dict": False, **schedulers.step_kwargs(scheduler, generators, seeds)}
    timesteps = scheduler.timesteps[start:]
    total = len(timesteps)
    if hasattr(denoiser, "total_steps"):
        denoiser.total_steps = total
    x = latents
    estimate: torch.Tensor | None = None  # the denoised image the last finished step predicts
    megapixels = latents.shape[-2] * latents.shape[-1] * LATENT_FACTOR**2 / 1e6
    for i, t in enumerate(timesteps):
        if progress.take_skip():
            return (x if estimate is None else estimate), False
        started, rows = time.perf_counter(), _rows_done(denoiser)
        _set_sigma(denoiser, schedulers.sigma_at(scheduler, t))
        try:
            x_in = scheduler.scale_model_input(x, t)
            with torch.inference_mode():
                pred = denoiser(x_in, t)
        except Interrupted:
            if estimate is None:  # not one step finished: nothing to show
                raise
            return estimate, False
        output = scheduler.step(pred, t, x, **step_kwargs)
        x = output[0]
        if after_step is not None:
            x = after_step(i, x)
        estimate = denoised_estimate(scheduler, output, x)
        if rows is not None:
            progress.record_step_time(megapixels, _rows_done(denoiser) - rows, time.perf_counter() - started)
        try:
            progress.step(step_offset - (-(i + 1) * steps_display // total), estimate)  # 2nd order: sampler steps
        except Interrupted:
            return estimate, False
    return x, True


def denoised_estimate(scheduler: Any, output: Any, x: torch.Tensor) -> torch.Tensor:
    """The fully denoised latents the scheduler's last step predicts: what an interrupted or skipped job returns,
    as A1111 returns k-diffusion's ``denoised`` of the last step. Schedulers that report it give
    ``pred_original_sample``; DPM-Solver++ and UniPC keep it as their last model output; others give the
    partly denoised latents themselves."""
    predicted = output[1] if isinstance(output, tuple) and len(output) > 1 else None
    if isinstance(predicted, torch.Tensor) and predicted.shape == x.shape:
        return predicted
    config = getattr(scheduler, "config", {})
    x0_outputs = (config.get("algorithm_type") in ("dpmsolver++", "sde-dpmsolver++")
                  or bool(config.get("predict_x0", False)))
    outputs = [o for o in getattr(scheduler, "model_outputs", None) or [] if isinstance(o, torch.Tensor)]
    if x0_outputs and outputs and outputs[-1].shape == x.shape:
        return outputs[-1]
    return x


def _set_sigma(denoiser: Any, sigma: float | None) -> None:
    for part in (denoiser, getattr(denoiser, "base", None), getattr(denoiser, "refiner", None)):
        if part is not None and hasattr(part, "sigma"):
            part.sigma = sigma


def _rows_done(denoiser: Any) -> int | None:
    """UNet rows the denoiser has evaluated (a refiner switch counts both of its denoisers); None if unknown."""
    parts = [denoiser, getattr(denoiser, "base", None), getattr(denoiser, "refiner", None)]
    counts = [part.rows for part in parts if isinstance(getattr(part, "rows", None), int)]
    return sum(counts) if counts else None


def img2img_steps(steps: int, strength: float, fix_steps: bool) -> tuple[int, int]:
    """A1111's img2img step arithmetic: (steps of the full schedule, steps actually run).

    The schedule for ``steps`` is built and sampling starts part-way, at the level ``strength`` of the way down:
    ``int(strength * steps) + 1`` steps run (0.75 x 20 -> 16 of 20). With ``img2img_fix_steps`` (or a hires pass)
    the schedule is stretched to ``int(steps / strength)`` so exactly ``steps`` run."""
    strength = min(max(strength, 0.0), 0.999)
    if fix_steps:
        total = int(steps / strength) if strength > 0 else 0
        return max(total, steps), steps
    return steps, int(strength * steps) + 1


def img2img_start(scheduler: Any, total_steps: int, run_steps: int, device: Any) -> int:
    """Prepare ``scheduler`` for the last ``run_steps`` of a ``total_steps`` schedule; returns the timestep index
    to start from (second-order schedulers have two timesteps per step)."""
    scheduler.set_timesteps(total_steps, device=device)
    start = (total_steps - run_steps) * int(getattr(scheduler, "order", 1))
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    return start


def add_noise(scheduler: Any, latents: torch.Tensor, noise: torch.Tensor, index: int) -> torch.Tensor:
    """``latents`` noised to the level of timestep ``index`` (k-style schedulers: latents + sigma * noise)."""
    t = scheduler.timesteps[index:index + 1]
    return scheduler.add_noise(latents, noise, t.repeat(latents.shape[0]) if t.numel() else t)


def extra_noise(scheduler: Any, clean: torch.Tensor, noise: torch.Tensor, noised: torch.Tensor, index: int,
                amount: float, hook: Callable[[ExtraNoiseParams], None] | None = None) -> torch.Tensor:
    """A1111's "Extra noise multiplier for img2img and hires fix": ``xi + noise * amount`` in k-diffusion's space,
    i.e. scaled by the coefficient the scheduler gives the clean latents at this step (1 for k-style schedulers,
    sqrt(alpha_cumprod) for DDIM, as A1111's timestep samplers scale it). ``hook`` is the extensions'
    ``on_extra_noise``, called first."""
    params = ExtraNoiseParams(noise, clean, noised)
    if hook is not None:
        hook(params)
    ones = torch.ones_like(clean[:1])
    scale = add_noise(scheduler, ones, torch.zeros_like(ones), index).mean()
    return noised + _same_shape(params.noise, noise, "noise") * amount * scale


def check_finite(latents: torch.Tensor, what: str) -> None:
    if not torch.isfinite(latents).all():
        raise NansError(
            f"A tensor with NaNs was produced in the {what}. This can happen with fp16 precision on some models or "
            "GPUs; try the --no-half command line flag (and --no-half-vae), or disable this check with "
            "--disable-nan-check.")


VAE_TILING_MODES = ("Automatic", "Always", "Never")
TILE_ABOVE_PIXELS = 2048 * 2048  # Automatic: larger images are decoded/encoded in tiles


def tiling_wanted(mode: str, width: int, height: int, device: Any = None) -> bool:
    """Whether the VAE should work in tiles: "Always", "Never", or (Automatic) for images above ~4 MP, or when a
    CUDA device has less free memory than an untiled decode needs (about 1.6 GB per megapixel in fp16)."""
    if mode == "Always":
        return True
    if mode == "Never":
        return False
    pixels = width * height
    if pixels > TILE_ABOVE_PIXELS:
        return True
    if device is not None and getattr(device, "type", "") == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
        except RuntimeError:
            return False
        return free < pixels / 1e6 * 1.6e9
    return False


@contextlib.contextmanager
def vae_tiles(vae: Any, enabled: bool) -> Iterator[None]:
    """The VAE decodes and encodes in overlapping tiles inside the block (diffusers' tiled VAE: each tile is a
    fraction of the memory; seams are blended), and as before after it."""
    if not enabled or not hasattr(vae, "enable_tiling"):
        yield
        return
    before = bool(getattr(vae, "use_tiling", False))
    vae.enable_tiling()
    try:
        yield
    finally:
        if not before:
            vae.disable_tiling()


def decode_latents(model: LoadedModel, latents: torch.Tensor, auto_upcast: bool = True,
                   tiling: str = "Automatic") -> list[torch.Tensor]:
    """Decode one image at a time (bounded memory), returning tensors in [-1, 1]; large images in tiles
    (``tiling``, see ``tiling_wanted``). On NaN in fp16, switch the VAE to fp32 for the rest of the session and
    retry, as A1111's ``auto_vae_precision`` does."""
    height, width = latents.shape[-2] * 8, latents.shape[-1] * 8
    with vae_tiles(model.vae, tiling_wanted(tiling, width, height, model.device)):
        return _decode_each(model, latents, auto_upcast)


@torch.inference_mode()
def _decode_each(model: LoadedModel, latents: torch.Tensor, auto_upcast: bool) -> list[torch.Tensor]:
    scaling = float(getattr(model.vae.config, "scaling_factor", 0.18215))
    shift = getattr(model.vae.config, "shift_factor", None) or 0.0
    images = []
    for latent in latents:
        for attempt in range(2):
            z = (latent[None] / scaling + shift).to(model.device, model.vae_dtype)
            image = model.vae.decode(z, return_dict=False)[0].float()
            if torch.isfinite(image).all():
                break
            if attempt == 0 and auto_upcast and model.vae_dtype != torch.float32:
                log.warning("VAE produced NaNs in %s; switching the VAE to 32-bit floats for this session. "
                            "Use --no-half-vae to start that way.", model.vae_dtype)
                torch.nn.Module.to(model.vae, torch.float32)  # torch's own: diffusers' override only adds a warning
                model.vae_dtype = torch.float32
                continue
            raise NansError("A tensor with NaNs was produced in VAE. Use --no-half-vae.")
        images.append(image[0])
    return images


def to_pil(image: torch.Tensor) -> Image.Image:
    """[-1, 1] CHW tensor -> 8-bit RGB, truncating like A1111 (``astype(uint8)`` after scaling by 255)."""
    x = torch.clamp((image.float() + 1.0) / 2.0, 0.0, 1.0)
    array = (255.0 * x.permute(1, 2, 0).cpu().numpy()).astype(np.uint8)
    return Image.fromarray(array)


# Linear latent -> RGB factors for live previews ("Approx cheap"), per latent space.
_CHEAP_RGB = {
    "sd": ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473)),
    "sdxl": ((0.3448, 0.4168, 0.4395), (-0.1953, -0.0290, 0.0250), (0.1074, 0.0886, -0.0163),
             (-0.3730, -0.2499, -0.2088)),
}


def cheap_preview(latents: torch.Tensor, sdxl: bool) -> Image.Image:
    """First image of the batch, approximated without the VAE (microseconds, not a decode)."""
    coefs = torch.tensor(_CHEAP_RGB["sdxl" if sdxl else "sd"], dtype=torch.float32)
    latent = latents[0, :4].float().cpu()
    rgb = torch.einsum("lxy,lr->rxy", latent, coefs)
    return to_pil(rgb)
