"""Flux on the CPU (issue 19): our txt2img against diffusers' ``FluxPipeline`` on the same weights, at Flux's real
widths (transformer 3072 wide with 24 heads, T5 4096 wide, CLIP-L and the 16-channel autoencoder at full size)
but reduced depth (``--double``/``--single`` blocks, ``--t5-layers``), random weights, from files in the layouts
users download (BFL transformer in bf16, clip_l, t5xxl, ae) through our loader.

Prints the load time, seconds per step of each system at each size with their ratio, and the process's peak RSS.
The time per step is ``(T(high steps) - T(low steps)) / (high - low)`` per system, which cancels prompt encoding,
decoding and saving; runs alternate between the systems and the median of ``--repeats`` is kept. A full-depth
Flux dev step costs about ``19/double`` (double blocks) and ``38/single`` (single blocks) times these.

    venv/bin/python tests/benchmarks/flux_speed.py [--sizes 256 512] [--steps 2 4] [--repeats 3] [--double 2]
                                                   [--single 4] [--t5-layers 2] [--threads N]
                                                   [--first-block-cache 0.1]
    venv/bin/python tests/benchmarks/flux_speed.py --dry-run   # tiny shapes: checks the script in seconds
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

PROMPT = "a photograph of an astronaut riding a horse"


def build(args: argparse.Namespace):
    """Flux-shaped random modules (diffusers classes), filled without the libraries' init (speed only)."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from tests.support import tiny_flux

    if args.dry_run:
        return tiny_flux.build(seed=0)
    with torch.device("meta"):
        transformer = FluxTransformer2DModel(num_layers=args.double, num_single_layers=args.single,
                                             guidance_embeds=True)
        clip = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                            num_hidden_layers=12, max_position_embeddings=77,
                                            hidden_act="quick_gelu", projection_dim=768))
        t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=args.t5_layers,
                                     num_heads=64, feed_forward_proj="gated-gelu"))
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            layers_per_block=2, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                            use_post_quant_conv=False)
    gen = torch.Generator().manual_seed(0)
    modules = []
    for module in (transformer, clip, t5, vae):
        module = module.to_empty(device="cpu")
        with torch.no_grad():
            for p in module.parameters():
                p.normal_(0, 0.02, generator=gen)
        modules.append(module.eval())
    return tiny_flux.TinyFlux(*modules)


def ours(model, folder: Path, size: int, steps: int, cache: float = 0.0) -> float:
    from tests.support.engine import default_settings, run_txt2img

    settings = default_settings(samples_save=False, grid_save=False, flux_first_block_cache=cache)
    started = time.perf_counter()
    run_txt2img(model, folder, settings=settings, prompt=PROMPT, width=size, height=size, steps=steps, seed=1,
                cfg_scale=1.0, sampler_name="Euler", distilled_cfg_scale=3.5)
    return time.perf_counter() - started


def theirs(pipe, size: int, steps: int) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        pipe(PROMPT, height=size, width=size, num_inference_steps=steps, guidance_scale=3.5,
             generator=torch.Generator().manual_seed(1), output_type="pil")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, nargs=2, default=[2, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--double", type=int, default=2)
    parser.add_argument("--single", type=int, default=4)
    parser.add_argument("--t5-layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--first-block-cache", type=float, default=0.0,
                        help="also time ours with First-Block-Cache at this threshold (opt-in setting)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dry_run:
        args.sizes, args.steps, args.repeats = [64], [1, 2], 1
        args.first_block_cache = args.first_block_cache or 0.1

    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    from modules.models import configs, loader
    from tests.support import tiny_flux

    folder = Path(tempfile.mkdtemp(prefix="flux-speed-"))
    tiny = build(args)
    files = tiny_flux.write_split(folder / "models", tiny, dtype=torch.bfloat16)
    del tiny
    started = time.perf_counter()
    model = loader.load_checkpoint(files["transformer"], parts=[files["clip_l"], files["t5"], files["vae"]])
    load_s = time.perf_counter() - started
    params = sum(p.numel() for p in model.unet.parameters())
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
        max_image_seq_len=4096), vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer,
        text_encoder_2=model.text_encoder_2, tokenizer_2=model.tokenizer_2, transformer=model.unet)
    pipe.set_progress_bar_config(disable=True)
    low, high = args.steps
    print(f"flux_speed: transformer {params / 1e6:.0f} M parameters ({model.extra['transformer_config']['num_layers']} "
          f"double, {model.extra['transformer_config']['num_single_layers']} single blocks), threads "
          f"{torch.get_num_threads()}, load {load_s:.2f} s")
    ours(model, folder, args.sizes[0], 1)  # warm-up: first-call costs out of the timings
    theirs(pipe, args.sizes[0], 1)
    for size in args.sizes:
        per_step: dict[str, list[float]] = {"ours": [], "diffusers": [], "cached": []}
        for _ in range(args.repeats):
            per_step["ours"].append((ours(model, folder, size, high) - ours(model, folder, size, low)) / (high - low))
            per_step["diffusers"].append((theirs(pipe, size, high) - theirs(pipe, size, low)) / (high - low))
            if args.first_block_cache > 0:
                fbc = args.first_block_cache
                per_step["cached"].append((ours(model, folder, size, high, fbc)
                                           - ours(model, folder, size, low, fbc)) / (high - low))
        a, b = statistics.median(per_step["ours"]), statistics.median(per_step["diffusers"])
        print(f"  {size}x{size}: ours {a:.3f} s/step, diffusers FluxPipeline {b:.3f} s/step, ratio {a / b:.3f}")
        if per_step["cached"]:
            c = statistics.median(per_step["cached"])
            print(f"  {size}x{size}: ours with First-Block-Cache {args.first_block_cache}: {c:.3f} s/step "
                  f"({a / c:.2f}x faster than without)")
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
