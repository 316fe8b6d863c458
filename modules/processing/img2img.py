"""img2img and inpainting: encode the init image, noise it to the denoising strength, sample the rest of the way.

With a mask, only the masked area is repainted: the unmasked latents are put back after every step, and the decoded
image is composited over the original so that outside the (blurred) mask every pixel is the input's. "Only masked"
works on a crop around the mask scaled to the processing size and pastes it back. Inpainting checkpoints (9-channel
UNet) also get the mask and the masked image as conditioning, with A1111's "Conditional mask weight".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image, ImageOps

from modules.errors import FieldError
from modules.processing import imageops, masking, saving
from modules.processing.context import Processed, ProcessingContext
from modules.processing.job_settings import JobSettings
from modules.processing.generation import LATENT_FACTOR, Batch, Job, Plan, number, run_job
from modules.processing.masking import INPAINT_AREAS, MASK_MODES, MASKED_CONTENT  # noqa: F401 - re-exported
from modules.processing.params import Img2ImgParams
from modules.processing.sampling import add_noise, denoise, img2img_start, img2img_steps
from modules.processing.txt2img import pil_to_tensor

FILL, ORIGINAL, LATENT_NOISE, LATENT_NOTHING = range(4)
BLANK_MASK_NOTE = 'Unable to perform "Inpaint Only mask" because mask is blank, switch to img2img mode.'


@dataclass
class PreparedImages:
    """The init images as the sampler sees them, and what is needed to put the results back."""

    pixels: list[Image.Image]  # processing size, one per batch slot
    overlays: list[Image.Image | None] = field(default_factory=list)  # originals, opaque outside the mask
    paste_box: tuple[int, int, int, int] | None = None  # "Only masked": where the result goes in the original
    processing_mask: Image.Image | None = None  # at processing size (blurred), drives latent blending
    overlay_mask: Image.Image | None = None


def prepare_images(p: Img2ImgParams, settings: Mapping[str, Any], comments: list[str]) -> PreparedImages:
    """A1111's img2img ``init``: normalise, mask (binarise, invert, blur), crop for "Only masked", resize, pre-fill."""
    if not p.init_images:
        raise FieldError("init_images", "at least one init image is required")
    originals = [imageops.normalize_input(im) for im in p.init_images]
    background = JobSettings.of(settings).img2img_background_color or "#ffffff"
    width, height = p.width, p.height
    full_res = p.inpaint_full_res
    mask = overlay_mask = processing_mask = None
    paste_box = None
    # Latent upscale resizes the latent instead of the pixels; with a mask the overlay needs the pixels resized.
    resize_mode = imageops.JUST_RESIZE if p.resize_mode == imageops.LATENT_UPSCALE else p.resize_mode
    pixel_resize = p.mask is not None or p.resize_mode != imageops.LATENT_UPSCALE
    if p.mask is not None:
        mask = _user_mask(p, originals[0].size)
        if full_res:
            box = masking.crop_region(mask, p.inpaint_full_res_padding)
            if box is None:
                comments.append(BLANK_MASK_NOTE)
                full_res, mask = False, None
            else:
                box = masking.expand_to_ratio(box, width, height, mask.width, mask.height)
                overlay_mask = mask
                processing_mask = imageops.resize_image(imageops.RESIZE_AND_FILL, mask.crop(box), width, height)
                paste_box = box
        if mask is not None and not full_res:
            processing_mask = imageops.resize_image(resize_mode, mask, width, height).convert("L")
            # A1111 doubles the mask for the overlay, so the blur's inner half shows the result fully.
            doubled = np.clip(np.asarray(processing_mask, dtype=np.float32) * 2, 0, 255).astype(np.uint8)
            overlay_mask = Image.fromarray(doubled, "L")

    pixels, overlays = [], []
    for original in originals:
        image = imageops.flatten(original, background)
        if paste_box is None and pixel_resize:
            image = imageops.resize_image(resize_mode, image, width, height)
        overlays.append(masking.overlay_of(image, overlay_mask) if overlay_mask is not None else None)
        if paste_box is not None:
            image = imageops.resize_image(imageops.RESIZE_AND_FILL, image.crop(paste_box), width, height)
        if processing_mask is not None and p.inpainting_fill != ORIGINAL:
            image = masking.fill_masked(image, processing_mask)
        pixels.append(image)
    if len(pixels) == 1:
        pixels, overlays = pixels * p.batch_size, overlays * p.batch_size
    return PreparedImages(pixels, overlays, paste_box, processing_mask, overlay_mask)


def _user_mask(p: Img2ImgParams, image_size: tuple[int, int]) -> Image.Image:
    """The mask at the init image's size (a mask of another size is stretched to it), binarised, inverted for
    "Inpaint not masked", blurred."""
    mask = p.mask
    if mask.size != image_size:
        mask = imageops.normalize_input(mask).resize(image_size, Image.Resampling.LANCZOS)
    mask = masking.binary_mask(mask, p.mask_round)
    if p.inpainting_mask_invert:
        mask = ImageOps.invert(mask)
    blur_x, blur_y = p.blur_xy()
    if blur_x or blur_y:
        mask = masking.blur_mask(mask, blur_x, blur_y)
    return mask


class Img2ImgPlan(Plan):
    kind = saving.IMG2IMG

    def __init__(self, p: Img2ImgParams) -> None:
        self.p = p
        self.prepared: PreparedImages | None = None
        self.init_latents: torch.Tensor | None = None
        self.keep: torch.Tensor | None = None  # 1 where the original latents stay
        self.image_conditioning: torch.Tensor | None = None
        self.total_steps = self.run_steps = p.steps  # set from the settings in prepare

    def width_height(self) -> tuple[int, int]:
        return self.p.width, self.p.height

    def prepare(self, job: Job) -> None:
        p, settings = self.p, job.settings
        self.total_steps, self.run_steps = img2img_steps(p.steps, p.denoising_strength,
                                                         settings.img2img_fix_steps)
        self.progress_steps = self.run_steps
        self.prepared = prepared = prepare_images(p, settings, job.comments)
        if job.ctx.control is not None:  # ControlNet works from what the sampler sees (the crop, when only masked)
            job.ctx.control.use_img2img(prepared.pixels[0], prepared.processing_mask, prepared.paste_box,
                                        imageops.normalize_input(p.init_images[0]).size)
        if prepared.processing_mask is not None:
            blur_x, blur_y = p.blur_xy()
            job.extra["Mask blur"] = blur_x if blur_x == blur_y else None
            job.extra["Mask mode"] = MASK_MODES[1] if p.inpainting_mask_invert else None
            job.extra["Masked content"] = MASKED_CONTENT[p.inpainting_fill]
            if prepared.paste_box is not None:
                job.extra["Inpaint area"] = INPAINT_AREAS[1]
                job.extra["Masked area padding"] = p.inpaint_full_res_padding
        multiplier = self._noise_multiplier(settings)
        if multiplier != 1.0:
            job.extra["Noise multiplier"] = number(multiplier, job.ctx.from_api)
        if p.denoising_strength == 0:
            return  # nothing to sample: the results are the prepared images themselves
        pixels = pil_to_tensor(prepared.pixels)
        latents = job.encode(pixels)
        lh, lw = p.height // LATENT_FACTOR, p.width // LATENT_FACTOR
        if latents.shape[2:] != (lh, lw):  # resize mode 3: the latent is resized, not the image
            latents = torch.nn.functional.interpolate(latents, size=(lh, lw), mode="bilinear")
        self.init_latents = latents
        if prepared.processing_mask is not None:
            repaint = masking.latent_mask_array(prepared.processing_mask, lw, lh, p.mask_round)
            self.keep = torch.from_numpy(1.0 - repaint)[None, None].to(latents.device)
        if job.model.kind.inpainting:
            self.image_conditioning = self._inpainting_conditioning(job, pixels)

    def _noise_multiplier(self, settings: JobSettings) -> float:
        value = self.p.initial_noise_multiplier
        return float(settings.initial_noise_multiplier if value is None else value)

    @torch.inference_mode()
    def _inpainting_conditioning(self, job: Job, pixels: torch.Tensor) -> torch.Tensor:
        """Mask + latents of the image with the masked area blanked by ``inpainting_mask_weight`` (A1111
        ``inpainting_image_conditioning``); no mask means the whole image counts as masked."""
        assert self.prepared is not None
        mask_image = self.prepared.processing_mask
        if mask_image is None:
            mask = torch.ones(1, 1, *pixels.shape[-2:])
        else:
            mask = torch.from_numpy(np.asarray(mask_image, dtype=np.float32) / 255.0)[None, None]
            if self.p.mask_round:
                mask = torch.round(mask)
        weight = job.settings.inpainting_mask_weight
        blanked = torch.lerp(pixels, pixels * (1.0 - mask), weight)
        latents = job.encode(blanked)
        size = (self.p.height // LATENT_FACTOR, self.p.width // LATENT_FACTOR)
        if latents.shape[-2:] != size:  # resize mode 3: conditioning follows the resized latent
            latents = torch.nn.functional.interpolate(latents, size=size, mode="bilinear")
        return job.family.inpainting_conditioning(mask, latents)

    def sample(self, job: Job, batch: Batch) -> Any:
        p, ctx, model = self.p, job.ctx, job.model
        if self.init_latents is None:  # denoising strength 0
            assert self.prepared is not None
            return [im.copy() for im in self.prepared.pixels[:batch.size]]
        init = self.init_latents[:batch.size].to(model.device)
        scheduler = job.new_scheduler(size=self.width_height())
        start = img2img_start(scheduler, self.total_steps, self.run_steps, model.device)
        noise = batch.rng.first().to(model.device, torch.float32)
        keep = self.keep
        if keep is not None and p.inpainting_fill == LATENT_NOISE:
            init = init * keep + noise * (1.0 - keep)
        elif keep is not None and p.inpainting_fill == LATENT_NOTHING:
            init = init * keep
        start_noise = noise * self._noise_multiplier(job.settings)
        x = add_noise(scheduler, init, start_noise, start)
        x = job.extra_noise(scheduler, init, start_noise, x, start)
        last = len(scheduler.timesteps) - start - 1

        def put_back_unmasked(i: int, latents: torch.Tensor) -> torch.Tensor:
            # the unmasked area follows the original's own noised trajectory, and ends exactly on it
            target = init if i >= last else add_noise(scheduler, init, start_noise, start + i + 1)
            return target * keep + latents * (1.0 - keep)

        fixed = job.settings.img2img_fix_steps
        with job.networks(batch.prompts) as (encoder, clip_prompts):
            evaluations = len(scheduler.timesteps) - (start if fixed else 0)
            conditioning = job.conditioning(encoder, clip_prompts, batch.negative_prompts, evaluations)
            ic = self.image_conditioning
            denoiser = job.denoiser(conditioning, p.width, p.height, None if ic is None else ic[:batch.size])
            denoiser = job.with_refiner(
                denoiser, lambda enc: job.conditioning(enc, clip_prompts, batch.negative_prompts, evaluations),
                len(scheduler.timesteps) - start, p.width, p.height)
            x, _ = denoise(scheduler, denoiser, x, batch.rng.generators, ctx.progress, self.run_steps,
                           after_step=put_back_unmasked if keep is not None else None, seeds=batch.seeds,
                           start=start)
        return x

    def finish_image(self, job: Job, batch: Batch, index_in_batch: int, image: Image.Image) -> Image.Image:
        assert self.prepared is not None
        slot = index_in_batch % len(self.prepared.overlays)
        overlay = self.prepared.overlays[slot]
        if overlay is None:
            return image
        return masking.composite(image, overlay, self.prepared.paste_box)


def img2img(p: Img2ImgParams, ctx: ProcessingContext) -> Processed:
    """img2img / inpainting job: ``n_iter`` batches of ``batch_size`` images from ``p.init_images``."""
    count = len(p.init_images)
    if count > 1:  # several init images fill the batch, one each (A1111)
        if count > p.batch_size:
            raise FieldError("init_images", f"{count} images given; expected 1 or at most batch_size "
                                            f"({p.batch_size})")
        p = p.model_copy(update={"batch_size": count})
    return run_job(p, ctx, Img2ImgPlan(p))
