"""Benchmark: a full-size SD1.5-shaped checkpoint (random weights) through the real loader and txt2img engine, on CPU.

1. Builds the SD1.5 UNet (860M params), VAE (84M) and CLIP-L text encoder (123M) directly in fp16 (meta device ->
   fp16 -> empty CPU storage -> seeded fill: no fp32 copy ever exists), converts them to the ORIGINAL CompVis/LDM key
   layout with the reverse converter of ``tests/support/ldm_layout.py`` and writes ONE ``.safetensors`` file (~2 GB)
   with no yaml beside it, so the loader must pick the bundled ``v1-inference.yaml``.
2. Loads it with ``load_checkpoint(path, DevicePolicy.cpu())`` (fp32), timed.
3. Generates one 64x64 image through ``txt2img`` (Euler a, seed 1), timed per step, and checks the image.
4. Prints a report.

Run from the repository root (about a minute on 2 CPU cores, ~6.5 GiB peak RAM):

    venv/bin/python tests/benchmarks/full_size_sd15.py [--steps 20] [--out DIR] [--keep]

Peak RSS is measured per phase where Linux allows resetting the high-water mark (/proc/self/clear_refs), else it is
the process lifetime peak (getrusage). Weights are random: the image is noise, checked only for shape, mode,
finiteness and not being flat.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from tests.support import ldm_layout as L  # noqa: E402
from tests.support import tiny_checkpoints as T  # noqa: E402

PROMPT = "a photograph of an astronaut riding a horse"
# Real SD1.5 files: 686 UNet + 248 VAE + 197 CLIP-L (196 tensors + position_ids) tensors.
EXPECTED_KEYS = {"unet": 686, "vae": 248, "text_encoder": 197}
EXPECTED_PARAMS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
PREFIXES = {"unet": L.UNET_PREFIX, "vae": L.VAE_PREFIX, "text_encoder": "cond_stage_model."}
GiB = 1024**3


# ---------------------------------------------------------------------------------------------------------------------
# Memory figures


class PeakRSS:
    """Per-phase peak RSS: Linux lets a process reset its own high-water mark (``echo 5 > /proc/self/clear_refs``).

    The reset also resets getrusage's ``ru_maxrss``, so the overall peak is the largest phase peak.
    """

    def __init__(self) -> None:
        self.resettable = self._reset()

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    @staticmethod
    def _status(field: str) -> int | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def start(self) -> None:
        gc.collect()
        if self.resettable:
            self.resettable = self._reset()

    def peak(self) -> int:
        hwm = self._status("VmHWM") if self.resettable else None
        return hwm if hwm is not None else self.lifetime()

    def current(self) -> int:
        return self._status("VmRSS") or 0

    @staticmethod
    def lifetime() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def gib(n: int | float) -> str:
    return f"{n / GiB:.2f} GiB"


# ---------------------------------------------------------------------------------------------------------------------
# 1. Build and write


def _fp16_module(factory: Any, seed: int) -> nn.Module:
    """Build on meta, cast to fp16 there (free), allocate fp16 storage only, fill with seeded well-scaled noise."""
    with torch.device("meta"):
        module = factory()
    nn.Module.to(module, dtype=torch.float16)  # torch's own .to: diffusers/transformers overrides add checks only
    module = module.to_empty(device="cpu")
    return T._fill_(module, seed)  # the tiny fixtures' init: unit-variance outputs, norms ~1, small biases


def build_ldm_state_dict(seed: int) -> tuple[dict[str, Tensor], dict[str, int]]:
    """Original-layout SD1.5 state dict (fp16 weights; int64 position_ids; fp32 LDM schedule buffers)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    sd: dict[str, Tensor] = {}
    params: dict[str, int] = {}
    base = seed * 16
    unet = _fp16_module(lambda: UNet2DConditionModel(**T.SD15_UNET), base)
    params["unet"] = sum(p.numel() for p in unet.parameters())
    sd.update(L.unet_to_ldm(unet.state_dict(), unet.config))
    del unet  # the state dict keeps the storages; the module wrapper goes
    vae = _fp16_module(lambda: AutoencoderKL(**T.SD15_VAE), base + 1)
    params["vae"] = sum(p.numel() for p in vae.parameters())
    sd.update(L.vae_to_ldm(vae.state_dict()))
    del vae
    te = _fp16_module(lambda: CLIPTextModel(CLIPTextConfig(**T.SD15_CLIP)), base + 2)
    params["text_encoder"] = sum(p.numel() for p in te.parameters())
    sd.update(L.clip_l_to_ldm(te.state_dict(), L.SD1_CLIP_PREFIX))
    del te
    # What real SD1.x files also carry: LDM's DDPM noise-schedule buffers and the LitEma counters (as the fixtures do).
    sd.update(L.ddpm_schedule_buffers(T.LINEAR_START, T.LINEAR_END, T.TIMESTEPS))
    sd["model_ema.decay"] = torch.tensor(0.9999, dtype=torch.float32)
    sd["model_ema.num_updates"] = torch.tensor(0, dtype=torch.int32)
    return {k: v.contiguous() for k, v in sd.items()}, params


def key_counts(sd: dict[str, Any]) -> dict[str, int]:
    counts = {name: sum(k.startswith(p) for k in sd) for name, p in PREFIXES.items()}
    counts["other"] = len(sd) - sum(counts.values())
    return counts


# Tensors compared after loading (original-layout key -> (LoadedModel attribute, diffusers/transformers key)).
SPOT_CHECKS = {
    "model.diffusion_model.input_blocks.0.0.weight": ("unet", "conv_in.weight"),
    "model.diffusion_model.input_blocks.4.0.in_layers.2.weight": ("unet", "down_blocks.1.resnets.0.conv1.weight"),
    "model.diffusion_model.output_blocks.8.2.conv.weight": ("unet", "up_blocks.2.upsamplers.0.conv.weight"),
    "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight":
        ("unet", "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"),
    "first_stage_model.decoder.up.0.block.0.conv1.weight": ("vae", "decoder.up_blocks.3.resnets.0.conv1.weight"),
    "first_stage_model.decoder.mid.attn_1.q.weight": ("vae", "decoder.mid_block.attentions.0.to_q.weight"),
    "cond_stage_model.transformer.text_model.final_layer_norm.weight": ("text_encoder", "final_layer_norm.weight"),
    "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight":
        ("text_encoder", "encoder.layers.11.mlp.fc2.weight"),
}


def write_checkpoint(out_dir: Path, seed: int, drop_cache: bool) -> dict[str, Any]:
    from safetensors.torch import save_file

    path = out_dir / "full_size_sd15_random.safetensors"
    for stale in (path, path.with_suffix(".yaml")):
        if stale.exists():
            stale.unlink()
    t0 = time.perf_counter()
    sd, params = build_ldm_state_dict(seed)
    t_build = time.perf_counter() - t0
    counts = key_counts(sd)
    spot = {k: sd[k].clone() for k in SPOT_CHECKS}
    dtypes: dict[str, int] = {}
    for v in sd.values():
        dtypes[str(v.dtype).removeprefix("torch.")] = dtypes.get(str(v.dtype).removeprefix("torch."), 0) + 1
    tensor_bytes = sum(v.numel() * v.element_size() for v in sd.values())
    t0 = time.perf_counter()
    save_file(sd, str(path), metadata={"format": "pt"})
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
        if drop_cache and hasattr(os, "posix_fadvise"):  # clean pages: the next read comes from disk (cold load)
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    t_write = time.perf_counter() - t0
    del sd
    gc.collect()
    return dict(path=path, params=params, counts=counts, spot=spot, dtypes=dtypes, tensor_bytes=tensor_bytes,
                build_s=t_build, write_s=t_write, file_bytes=path.stat().st_size)


# ---------------------------------------------------------------------------------------------------------------------
# 2. Load


def load(path: Path, spot: dict[str, Tensor]) -> tuple[Any, float, list[str]]:
    from modules.models.devices import DevicePolicy
    from modules.models.loader import load_checkpoint

    # The loader imports these lazily; import them first so the load figure is the file's, not Python's.
    import accelerate  # noqa: F401
    import diffusers.loaders.single_file_utils  # noqa: F401

    t0 = time.perf_counter()
    model = load_checkpoint(path, DevicePolicy.cpu())
    seconds = time.perf_counter() - t0
    problems = []
    if model.kind.label != "sd1":
        problems.append(f"detected as {model.kind.label!r}, expected 'sd1'")
    if model.extra.get("config_source") != "bundled" or Path(model.extra["config_path"]).name != "v1-inference.yaml":
        problems.append(f"config {model.extra.get('config_path')} ({model.extra.get('config_source')}), "
                        "expected the bundled v1-inference.yaml")
    for name in ("unet", "vae", "text_encoder"):
        module = getattr(model, name)
        n = sum(p.numel() for p in module.parameters())
        if n != EXPECTED_PARAMS[name]:
            problems.append(f"{name}: {n:,} parameters, expected {EXPECTED_PARAMS[name]:,}")
        wrong = {str(p.dtype) for p in module.parameters() if p.dtype != torch.float32 or p.device.type != "cpu"}
        if wrong:
            problems.append(f"{name}: parameters not CPU fp32 ({sorted(wrong)})")
    for ldm_key, (attr, key) in SPOT_CHECKS.items():
        got = getattr(model, attr).state_dict()[key]
        want = spot[ldm_key].float()
        if want.numel() == got.numel() and want.ndim == 4 and got.ndim == 2:  # VAE attention: 1x1 conv -> linear
            want = want.reshape(got.shape)
        if tuple(got.shape) != tuple(want.shape) or not torch.equal(got, want):
            problems.append(f"weight {ldm_key} -> {attr}.{key} differs after loading")
    return model, seconds, problems


# ---------------------------------------------------------------------------------------------------------------------
# 3. Generate


def generate(model: Any, steps: int, sampler: str, seed: int, work_dir: Path) -> dict[str, Any]:
    import numpy as np

    from modules.processing.progress import JobProgress
    from tests.support.engine import default_settings, run_txt2img

    marks: dict[str, Any] = {"unet_calls": 0, "first_unet": None, "steps": [], "decoder_finite": None}

    class TimedProgress(JobProgress):
        def step(self, step: int, latents: Any = None) -> None:
            marks["steps"].append(time.perf_counter())
            super().step(step, latents)

    def unet_pre(_module: Any, _args: Any) -> None:
        marks["unet_calls"] += 1
        if marks["first_unet"] is None:
            marks["first_unet"] = time.perf_counter()

    def decoder_post(_module: Any, _args: Any, output: Any) -> None:
        marks["decoder_finite"] = bool(torch.isfinite(output).all())
        marks["decoder_std"] = float(output.float().std())

    hooks = [model.unet.register_forward_pre_hook(unet_pre),
             model.vae.decoder.register_forward_hook(decoder_post)]
    settings = default_settings(samples_save=False, grid_save=False)
    try:
        t0 = time.perf_counter()
        result = run_txt2img(model, work_dir, settings=settings, progress=TimedProgress(), prompt=PROMPT,
                             width=64, height=64, steps=steps, seed=seed, sampler_name=sampler,
                             do_not_save_samples=True, do_not_save_grid=True)
        total = time.perf_counter() - t0
    finally:
        for h in hooks:
            h.remove()

    step_marks = marks["steps"]
    first = marks["first_unet"] or t0
    sampling = (step_marks[-1] - first) if step_marks else 0.0
    image = result.images[result.index_of_first_image]
    arr = np.asarray(image)
    problems = []
    if image.size != (64, 64) or image.mode != "RGB":
        problems.append(f"image is {image.size} {image.mode}, expected (64, 64) RGB")
    if marks["decoder_finite"] is False:
        problems.append("VAE decoder output has NaN/inf")
    if float(arr.std()) < 1.0 or len(np.unique(arr.reshape(-1, arr.shape[-1]), axis=0)) < 16:
        problems.append(f"image is flat (std {arr.std():.2f}, {len(np.unique(arr.reshape(-1, 3), axis=0))} colours)")
    if len(step_marks) != steps:
        problems.append(f"{len(step_marks)} progress steps, expected {steps}")
    return dict(
        total_s=total, sampling_s=sampling, per_step_s=sampling / max(1, len(step_marks)),
        before_sampling_s=first - t0, after_sampling_s=(t0 + total - step_marks[-1]) if step_marks else 0.0,
        unet_calls=marks["unet_calls"], sampler=result.sampler_name, schedule=result.schedule_label,
        image_std=float(arr.std()), image_mean=float(arr.mean()), decoder_std=marks.get("decoder_std"),
        infotext=result.infotexts[result.index_of_first_image], image=image, problems=problems,
    )


# ---------------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="folder for the checkpoint (default: a new temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint (and the image) instead of deleting")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps (default 20)")
    ap.add_argument("--sampler", default="Euler a", help='sampler name (default "Euler a")')
    ap.add_argument("--seed", type=int, default=1, help="image seed (default 1)")
    ap.add_argument("--weights-seed", type=int, default=0, help="seed of the random weights (default 0)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--warm-cache", action="store_true",
                    help="leave the written file in the page cache (default: drop it, so the load reads from disk)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    temp_dir = None
    if args.out is None:
        temp_dir = Path(tempfile.mkdtemp(prefix="full_size_sd15_"))
        out_dir = temp_dir
    else:
        out_dir = args.out
        out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="full_size_sd15_outputs_"))
    rss = PeakRSS()
    problems: list[str] = []
    path = None
    try:
        print(f"[1/3] building SD1.5-shaped fp16 random weights and writing them to {out_dir} ...", flush=True)
        rss.start()
        w = write_checkpoint(out_dir, args.weights_seed, drop_cache=not args.warm_cache)
        path, write_peak = w["path"], rss.peak()
        for name, want in EXPECTED_KEYS.items():
            if w["counts"][name] != want:
                problems.append(f"{name}: {w['counts'][name]} keys in the file, expected {want}")
        if path.with_suffix(".yaml").exists():
            problems.append("a yaml sits beside the checkpoint")
        print(f"      done: {gib(w['file_bytes'])} in {w['build_s']:.1f} s build + {w['write_s']:.1f} s write",
              flush=True)

        print("[2/3] load_checkpoint(path, DevicePolicy.cpu()) ...", flush=True)
        rss.start()
        model, load_s, load_problems = load(path, w["spot"])
        load_peak, after_load = rss.peak(), rss.current()
        problems += load_problems
        print(f"      done in {load_s:.1f} s ({model.kind.label}, {Path(model.extra['config_path']).name}, "
              f"{model.extra['config_source']})", flush=True)

        print(f"[3/3] txt2img 64x64, {args.steps} steps, {args.sampler}, seed {args.seed} ...", flush=True)
        rss.start()
        g = generate(model, args.steps, args.sampler, args.seed, work_dir)
        gen_peak = rss.peak()
        problems += g.pop("problems")
        if args.keep:
            image_path = out_dir / "full_size_sd15_random.png"
            g["image"].save(image_path)
            g["image_path"] = image_path

        c, p = w["counts"], w["params"]
        rows = [
            ("checkpoint", f"{path}{'' if args.keep else ' (deleted afterwards)'}"),
            ("file size", f"{w['file_bytes']:,} bytes ({gib(w['file_bytes'])}); tensor data {gib(w['tensor_bytes'])}"),
            ("keys", f"{sum(c.values())} total: UNet {c['unet']}, VAE {c['vae']}, text encoder {c['text_encoder']}, "
                     f"other {c['other']} (schedule buffers + EMA counters)"),
            ("tensor dtypes", ", ".join(f"{k} {v}" for k, v in sorted(w["dtypes"].items()))),
            ("parameters", f"UNet {p['unet']:,}, VAE {p['vae']:,}, text encoder {p['text_encoder']:,}"),
            ("build (random fp16)", f"{w['build_s']:.1f} s"),
            ("write (save+fsync)", f"{w['write_s']:.1f} s ({w['file_bytes'] / GiB / max(w['write_s'], 1e-9):.2f} GiB/s)"),
            ("load_checkpoint", f"{load_s:.1f} s  (CPU fp32; page cache {'warm' if args.warm_cache else 'dropped'})"),
            ("generation total", f"{g['total_s']:.1f} s  ({args.steps} steps, {g['sampler']} / {g['schedule']})"),
            ("  before sampling", f"{g['before_sampling_s']:.2f} s (prompt + negative encoding, setup)"),
            ("  sampling", f"{g['sampling_s']:.1f} s = {g['per_step_s']:.2f} s/step "
                           f"({g['unet_calls']} UNet calls, {g['unet_calls'] / max(1, args.steps):.0f}/step)"),
            ("  after sampling", f"{g['after_sampling_s']:.2f} s (VAE decode, PIL, infotext)"),
            ("image", f"64x64 RGB, mean {g['image_mean']:.1f}, std {g['image_std']:.1f}"
                      + (f", saved to {g['image_path']}" if args.keep else "")),
            ("peak RSS write", gib(write_peak) + ("" if rss.resettable else " (process lifetime)")),
            ("peak RSS load", gib(load_peak) + ("" if rss.resettable else " (process lifetime)")
             + f"; RSS after load {gib(after_load)}"),
            ("peak RSS generate", gib(gen_peak) + ("" if rss.resettable else " (process lifetime)")),
            ("peak RSS overall", f"{gib(max(write_peak, load_peak, gen_peak, rss.lifetime()))}"),
            ("torch threads", f"{torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op; "
                              f"{os.cpu_count()} CPUs; torch {torch.__version__}"),
            ("result", "OK" if not problems else "PROBLEMS:\n    - " + "\n    - ".join(problems)),
        ]
        width = max(len(k) for k, _ in rows)
        print("\n=== full-size SD1.5 (random weights) on CPU ===")
        for k, v in rows:
            print(f"{k:<{width}}  {v}")
        print(f"infotext: {g['infotext']!r}", flush=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
        if not args.keep:
            if path is not None and path.exists():
                path.unlink()
            if temp_dir is not None:
                shutil.rmtree(temp_dir, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
