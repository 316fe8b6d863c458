"""GPU speed and memory (issue 10, parts 4 and 5): SD1.5-shaped fp16 at 512x512, 20 steps, batch 1, CFG 7, Euler,
ours eager (SDPA) against plain diffusers on the same modules, channels-last, ``--compile blocks`` and ``graphs``
(with their warm-up), the memory modes (peak VRAM and speed), the VAE tiled and whole at 2048x2048, and SDXL at
1024x1024. Random weights in the real shapes (speed does not depend on the values); SD1.5 goes through our loader
from an original-layout state dict, as a downloaded file would.

    venv/bin/python tests/benchmarks/gpu_speed.py [--only sd15,diffusers,...] [--steps 20]
    venv/bin/python tests/benchmarks/gpu_speed.py --dry-run    # CPU, tiny shapes: checks this script in seconds

Sections: sd15, diffusers, channels_last, compile_blocks, compile_graphs, medvram, lowvram, vae_tiling, sdxl,
sdxl_compile. it/s is ``(steps - 2) / (T(steps) - T(2 steps))``: prompt encoding, VAE decode and saving cancel out.
Peak VRAM is ``torch.cuda.max_memory_allocated`` over one whole job (decode included). Each section reports its
own failure and the next one runs. Goals (issue 10): eager >= diffusers; compiled > 104.6 it/s (stable-fast on an
H100); SDXL > 22 it/s; SD1.5 peak <= 2.7 GiB.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

SECTIONS = ("sd15", "diffusers", "channels_last", "compile_blocks", "compile_graphs", "medvram", "lowvram",
            "vae_tiling", "sdxl", "sdxl_compile")
PROMPT = "a photograph of an astronaut riding a horse"
GIB = 1024 ** 3


@dataclasses.dataclass
class Setup:
    device: torch.device
    steps: int
    size: int
    sdxl_size: int
    backend: str  # torch.compile backend: inductor on the GPU, aot_eager in a dry run
    folder: Path

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def sync(setup: Setup) -> None:
    if setup.cuda:
        torch.cuda.synchronize()


def reset_peak(setup: Setup) -> None:
    gc.collect()
    if setup.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(setup: Setup) -> float | None:
    return torch.cuda.max_memory_allocated() / GIB if setup.cuda else None


def policy(setup: Setup, **changes: Any) -> Any:
    from modules.models.devices import DevicePolicy

    base = DevicePolicy.from_flags() if setup.cuda else DevicePolicy.cpu()
    return dataclasses.replace(base, **changes)


def load_sd15(setup: Setup, dry_run: bool, **policy_changes: Any) -> Any:
    from modules.models.loader import build_from_state_dict, load_checkpoint

    if dry_run:
        from tests.support.tiny_checkpoints import write_tiny_checkpoint

        return load_checkpoint(write_tiny_checkpoint("sd1", setup.folder, "tiny-sd1"), policy(setup, **policy_changes))
    from tests.benchmarks.full_size_sd15 import build_ldm_state_dict

    sd, _params = build_ldm_state_dict(seed=1)
    return build_from_state_dict(sd, setup.folder / "sd15-random.safetensors", policy(setup, **policy_changes),
                                 consume=True)


def job_seconds(model: Any, setup: Setup, steps: int, size: int) -> float:
    from tests.support.engine import default_settings, run_txt2img

    sync(setup)
    started = time.perf_counter()
    run_txt2img(model, setup.folder, settings=default_settings(samples_save=False, grid_save=False), prompt=PROMPT,
                width=size, height=size, steps=steps, seed=1, sampler_name="Euler", cfg_scale=7.0,
                do_not_save_samples=True, do_not_save_grid=True)
    sync(setup)
    return time.perf_counter() - started


def measure(setup: Setup, job: Callable[[int], float]) -> dict[str, Any]:
    """Warm-up job (its time is the compile warm-up where one applies), then it/s and the peak of a full job."""
    warm = job(setup.steps)
    job(2)
    reset_peak(setup)
    full = min(job(setup.steps) for _ in range(2))
    peak = peak_gib(setup)
    short = min(job(2) for _ in range(2))
    return {"it/s": (setup.steps - 2) / max(full - short, 1e-9), "job s": full, "first job s": warm, "peak GiB": peak}


def ours(model: Any, setup: Setup, size: int | None = None) -> dict[str, Any]:
    return measure(setup, lambda steps: job_seconds(model, setup, steps, size or setup.size))


def plain_diffusers(model: Any, setup: Setup) -> dict[str, Any]:
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    scheduler = EulerDiscreteScheduler.from_config(model.scheduler_config)
    pipe = StableDiffusionPipeline(vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer,
                                   unet=model.unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def job(steps: int) -> float:
        sync(setup)
        started = time.perf_counter()
        pipe(PROMPT, num_inference_steps=steps, guidance_scale=7.0, height=setup.size, width=setup.size,
             generator=torch.Generator().manual_seed(1))
        sync(setup)
        return time.perf_counter() - started

    return measure(setup, job)


def compiled(model: Any, setup: Setup, mode: str) -> dict[str, Any]:
    import torch._dynamo

    from modules.models import acceleration

    torch._dynamo.reset()
    acceleration.compile_unet(model.unet, mode, backend=setup.backend)
    return ours(model, setup)


def vae_tiling(model: Any, setup: Setup) -> dict[str, Any]:
    """Decode one 2048x2048 latent whole and tiled (dry run: 256x256)."""
    from modules.processing.sampling import decode_latents

    side = 2048 if setup.cuda else 256
    latents = torch.randn(1, 4, side // 8, side // 8, device=setup.device)
    out: dict[str, Any] = {}
    for label, mode in (("whole", "Never"), ("tiled", "Always")):
        reset_peak(setup)
        sync(setup)
        started = time.perf_counter()
        decode_latents(model, latents, auto_upcast=False, tiling=mode)
        sync(setup)
        out[f"{label} s"] = time.perf_counter() - started
        out[f"{label} peak GiB"] = peak_gib(setup)
    return out


def sdxl_model(setup: Setup, dry_run: bool) -> Any:
    """SDXL base shapes in fp16 on the device, with random weights (dry run: the tiny SDXL checkpoint)."""
    from modules.models.loader import load_checkpoint

    if dry_run:
        from tests.support.tiny_checkpoints import write_tiny_checkpoint

        return load_checkpoint(write_tiny_checkpoint("sdxl", setup.folder, "tiny-sdxl"), policy(setup))
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from modules.models import configs, memory
    from modules.models.types import LoadedModel, ModelKind
    from tests.support.tiny_checkpoints import SD15_VAE

    unet_config = dict(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816)

    def build(factory: Callable[[], torch.nn.Module]) -> torch.nn.Module:
        with torch.device("meta"):
            module = factory()
        torch.nn.Module.to(module, dtype=torch.float16)  # on meta: free; then fp16 storage only
        module = module.to_empty(device=setup.device)
        with torch.no_grad():
            for p in module.parameters():
                p.normal_(0, 0.02)
        return module.eval().requires_grad_(False)

    kind = ModelKind("sdxl")
    unet = build(lambda: UNet2DConditionModel(**unet_config))
    vae = build(lambda: AutoencoderKL(**dict(SD15_VAE, scaling_factor=0.13025)))
    te1 = build(lambda: CLIPTextModel(CLIPTextConfig(**configs.text_encoder_config("clip_l"))))
    te2 = build(lambda: CLIPTextModelWithProjection(CLIPTextConfig(**configs.text_encoder_config("openclip_bigg"))))
    from modules.models.loader import _read_yaml, scheduler_config_from_yaml

    return LoadedModel(kind=kind, path=setup.folder / "sdxl-random.safetensors", unet=unet, vae=vae,
                       text_encoder=te1, tokenizer=configs.load_tokenizer(configs.PAD_EOS),
                       scheduler_config=scheduler_config_from_yaml(_read_yaml(configs.bundled_yaml(kind)), "epsilon"),
                       device=setup.device, dtype=torch.float16, vae_dtype=torch.float16, text_encoder_2=te2,
                       tokenizer_2=configs.load_tokenizer(configs.PAD_OPENCLIP),
                       extra={"memory": memory.MemoryPlan(memory.NONE, "benchmark")})


def run_section(name: str, setup: Setup, dry_run: bool, cache: dict[str, Any]) -> dict[str, Any]:
    def base() -> Any:
        if "sd15" not in cache:
            cache["sd15"] = load_sd15(setup, dry_run)
        return cache["sd15"]

    if name == "sd15":
        return ours(base(), setup)
    if name == "diffusers":
        return plain_diffusers(base(), setup)
    if name == "vae_tiling":
        return vae_tiling(base(), setup)
    if name in ("sdxl", "sdxl_compile"):
        cache.pop("sd15", None)  # room for SDXL on smaller cards
        if "sdxl" not in cache:
            cache["sdxl"] = sdxl_model(setup, dry_run)
        if name == "sdxl_compile":
            return compiled(cache.pop("sdxl"), setup, "blocks") | {"size": setup.sdxl_size}
        return ours(cache["sdxl"], setup, setup.sdxl_size)
    # The rest load their own model: the policy differs.
    cache.pop("sd15", None)
    reset_peak(setup)
    started = time.perf_counter()
    if name == "channels_last":
        model = load_sd15(setup, dry_run, channels_last=True)
    elif name in ("medvram", "lowvram"):
        model = load_sd15(setup, dry_run, memory_mode=name)
    else:
        model = load_sd15(setup, dry_run)
    loaded = time.perf_counter() - started
    if name.startswith("compile_"):
        return compiled(model, setup, name.removeprefix("compile_")) | {"load s": loaded}
    return ours(model, setup) | {"load s": loaded}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny models, aot_eager: checks the script")
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --dry-run to check the script on the CPU")
    import diffusers

    device = torch.device("cuda" if not args.dry_run else "cpu")
    setup = Setup(device=device, steps=args.steps if not args.dry_run else 4, size=512 if not args.dry_run else 64,
                  sdxl_size=1024 if not args.dry_run else 64, backend="inductor" if not args.dry_run else "aot_eager",
                  folder=Path(tempfile.mkdtemp(prefix="gpu-speed-")))
    name = torch.cuda.get_device_name() if setup.cuda else "CPU (dry run)"
    print(f"device: {name}; torch {torch.__version__}, diffusers {diffusers.__version__}; {setup.steps} steps, "
          f"Euler, CFG 7, batch 1", flush=True)
    cache: dict[str, Any] = {}
    failed = 0
    for section in wanted:
        try:
            result = run_section(section, setup, args.dry_run, cache)
        except Exception:
            failed += 1
            print(f"{section}: FAILED\n{traceback.format_exc()}", flush=True)
            continue
        figures = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
                            if v is not None)
        print(f"{section:<15} {figures}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
