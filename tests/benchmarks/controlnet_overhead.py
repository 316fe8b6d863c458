"""ControlNet's per-step overhead (issue 18): one SD1.5-shaped ControlNet unit against the same step without it.

SD1.5's UNet and a ControlNet copied from its encoder (``ControlNetModel.from_unet``: the shape of
``control_v11p_sd15_canny``), random weights (speed does not depend on them), a CFG batch of two rows, through our
own per-step code (``GuidedDenoiser`` with a ``ControlPass``), so what is timed is what a job runs. Prints the UNet
step, the step with the unit in Balanced mode and in "ControlNet is more important" (which evaluates the prompt's
row only), their ratios (goal: at most 1.35x on the CPU), the ControlNet alone (the floor of the overhead) and the
ControlNet's weight memory.

    venv/bin/python tests/benchmarks/controlnet_overhead.py [--size 256] [--steps 3] [--device cpu|cuda]
    venv/bin/python tests/benchmarks/controlnet_overhead.py --dry-run   # tiny shapes: checks the script in seconds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

SD15 = dict(in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
            cross_attention_dim=768, attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
TINY = dict(SD15, block_out_channels=(32, 64, 64, 64), cross_attention_dim=32, attention_head_dim=2)


def build(config: dict, device: torch.device, dtype: torch.dtype):
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel(**config).eval()
    net = ControlNetModel.from_unet(unet).eval()
    for module in (unet, net):  # torch's own .to: diffusers' override only adds a warning
        torch.nn.Module.to(module, device=device, dtype=dtype)
    return unet, net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (latents are size/8)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps of each kind (after one warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes, one step")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    config, size, steps = (TINY, 64, 1) if args.dry_run else (SD15, args.size, args.steps)

    from modules.controlnet.control import ControlPass, UnitPass
    from modules.controlnet.models import LoadedControlNet
    from modules.controlnet.units import parse_unit
    from modules.processing.conditioning import Conditioning
    from modules.processing.sampling import GuidedDenoiser

    torch.manual_seed(0)
    unet, net = build(config, device, dtype)
    loaded = LoadedControlNet("benchmark", "sd1", net, device, dtype)
    hint = torch.rand(1, 3, size, size)
    model = SimpleNamespace(unet=unet, dtype=dtype, device=device)
    context = torch.randn(1, 77, config["cross_attention_dim"], device=device, dtype=dtype)
    cond = Conditioning(context, None)
    conditioning = SimpleNamespace(at=lambda step: (cond, cond), weights=[[1.0]], is_plain=True)
    x = torch.randn(1, 4, size // 8, size // 8, device=device)
    t = torch.tensor(500, device=device)

    def timed(control: ControlPass | None) -> list[float]:
        denoiser = GuidedDenoiser(model, conditioning, 7.0, control=control)  # type: ignore[arg-type]
        denoiser.total_steps = steps + 1
        times = []
        with torch.inference_mode():
            for i in range(steps + 1):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                denoiser(x, t)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if i:  # the first step warms up
                    times.append(time.perf_counter() - start)
        return times

    plain = statistics.median(timed(None))
    print(f"device: {device} ({torch.get_num_threads()} threads), {dtype}, {size}x{size}, CFG batch 2, "
          f"{'tiny shapes (dry run)' if args.dry_run else 'SD1.5 shapes'}")
    print(f"UNet step:                            {plain * 1000:9.1f} ms")
    for mode in ("Balanced", "ControlNet is more important"):  # the second evaluates the prompt's row only
        unit = parse_unit({"module": "none", "model": "benchmark", "control_mode": mode}, "u")
        control = ControlPass([UnitPass(unit, loaded, hint)])
        with_unit = statistics.median(timed(control))
        assert control.evaluations == steps + 1, "the ControlNet did not run every step"
        print(f"+ 1 ControlNet, {mode + ':':29s}{with_unit * 1000:9.1f} ms = {with_unit / plain:.2f}x "
              "(goal <= 1.35x on the CPU)")
    rows = torch.cat([x, x]).to(dtype)
    with torch.inference_mode():  # the ControlNet alone: the floor of any implementation's overhead
        alone = []
        for i in range(steps + 1):
            start = time.perf_counter()
            net(rows, t, encoder_hidden_states=torch.cat([context, context]), return_dict=False,
                controlnet_cond=hint.to(device, dtype).expand(2, -1, -1, -1))
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:
                alone.append(time.perf_counter() - start)
    net_alone = statistics.median(alone)
    print(f"the ControlNet alone (2 rows):        {net_alone * 1000:9.1f} ms = {net_alone / plain:.2f} of the UNet "
          f"step: the floor is {1 + net_alone / plain:.2f}x")
    weight_bytes = sum(p.numel() * p.element_size() for p in net.parameters())
    print(f"ControlNet weights:                   {weight_bytes / 2**20:9.1f} MiB")


if __name__ == "__main__":
    main()
