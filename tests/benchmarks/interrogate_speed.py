"""img2text on the CPU (issue 20): seconds per caption and peak memory of Interrogate DeepBooru with a full-size
random-weight ``model-resnet_custom_v3.pt`` (the released layout: 179 convolutions, 9176 tags) and of Interrogate
CLIP with full-size random BLIP base (Salesforce's layout, 384 px) and CLIP ViT-L/14 (OpenAI's layout) and the
bundled category lists, each loaded through our loaders as users' files are. Loading is timed apart from
captioning; the median of ``--repeats`` captions. WD14: a wd-vit-tagger-v3-sized ViT-B/16 at 448 px with 10861 tag
outputs, exported to ONNX here (torch's exporter) and run by onnxruntime as the released graph is.

    venv/bin/python tests/benchmarks/interrogate_speed.py [--repeats 3] [--threads N]
    venv/bin/python tests/benchmarks/interrogate_speed.py --dry-run   # a width-divided model: seconds
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    import numpy as np
    import torch
    from PIL import Image

    from modules.interrogate import deepbooru
    from modules.interrogate.service import Interrogator
    from tests.support import tiny_deepbooru

    if args.threads:
        torch.set_num_threads(args.threads)
    divisor, tag_count = (32, 50) if args.dry_run else (1, 9176)
    folder = Path(tempfile.mkdtemp(prefix="interrogate-speed-")) / "torch_deepdanbooru"
    tiny_deepbooru.write(folder / deepbooru.FILE, [f"tag_{i}" for i in range(tag_count)], divisor=divisor)
    size_mib = (folder / deepbooru.FILE).stat().st_size / 1024 ** 2
    started = time.perf_counter()
    model = deepbooru.load(folder / deepbooru.FILE)
    load_s = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    picture = Image.fromarray(np.random.RandomState(0).randint(0, 255, (768, 512, 3)).astype(np.uint8))
    service = Interrogator([], deepbooru_dirs=[folder])
    settings = {"interrogate_keep_models_in_memory": True}
    _first, median = timed_captions(service, picture, "deepdanbooru", settings, args.repeats)
    print(f"interrogate_speed: DeepBooru resnet_custom_v3 ({params / 1e6:.1f} M parameters, file {size_mib:.0f} MiB), "
          f"threads {torch.get_num_threads()}")
    print(f"  load {load_s:.2f} s, caption {median:.2f} s (median of {max(1, args.repeats)})")
    print(f"  peak RSS after DeepBooru {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    del model, service
    wd14_caption(folder.parent, picture, args)
    clip_caption(folder.parent, picture, args)
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


def timed_captions(service: Any, picture: Any, model: str, settings: dict[str, Any], repeats: int
                   ) -> tuple[float, float]:
    """(seconds of the first caption, loading included; the median of ``repeats`` more)."""
    started = time.perf_counter()
    service.interrogate(picture, model, settings)
    first = time.perf_counter() - started
    times = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        service.interrogate(picture, model, settings)
        times.append(time.perf_counter() - started)
    return first, statistics.median(times)


def wd14_caption(root: Path, picture: Any, args: argparse.Namespace) -> None:
    import csv
    import warnings

    import torch
    from transformers import ViTConfig, ViTModel

    from modules.interrogate.service import Interrogator

    size, tags, width, layers = (32, 20, 32, 1) if args.dry_run else (448, 10861, 768, 12)

    class Tagger(torch.nn.Module):  # NHWC BGR 0-255 in, a probability per tag out, as the released graphs
        def __init__(self) -> None:
            super().__init__()
            self.vit = ViTModel(ViTConfig(image_size=size, patch_size=16, hidden_size=width, num_hidden_layers=layers,
                                          num_attention_heads=max(1, width // 64), intermediate_size=4 * width,
                                          attn_implementation="eager"), add_pooling_layer=False)
            self.head = torch.nn.Linear(width, tags)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            hidden = self.vit(pixel_values=x.permute(0, 3, 1, 2) / 255.0).last_hidden_state
            return torch.sigmoid(self.head(hidden.mean(dim=1)))

    folder = root / "wd14" / "wd-vit-tagger-v3"
    folder.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Tagger().eval(), (torch.zeros(1, size, size, 3),), str(folder / "model.onnx"),
                          input_names=["input"], output_names=["output"], dynamo=False)
    with (folder / "selected_tags.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["tag_id", "name", "category", "count"])
        for i in range(tags):
            writer.writerow([i, f"tag_{i}", 9 if i < 4 else (4 if i % 50 == 0 else 0), tags - i])
    service = Interrogator([root / "wd14"])
    settings = {"interrogate_keep_models_in_memory": True}
    first, median = timed_captions(service, picture, "wd14", settings, args.repeats)
    size_mib = (folder / "model.onnx").stat().st_size / 1024 ** 2
    print(f"  WD14 ViT tagger ({size_mib:.0f} MiB ONNX, {size} px, {tags} tags): load + first caption {first:.2f} s, "
          f"caption {median:.2f} s (median of {max(1, args.repeats)})")


def clip_caption(root: Path, picture: Any, args: argparse.Namespace) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import BlipConfig, BlipForConditionalGeneration, CLIPConfig, CLIPModel

    from modules.interrogate.service import Interrogator
    from tests.support import tiny_blip_clip

    if args.dry_run:
        blip_model, clip_model = tiny_blip_clip.blip(), tiny_blip_clip.clip()
        tiny_blip_clip.write_blip(root / "BLIP", blip_model)
    else:  # BLIP base as Salesforce released it (384 px, BERT's 30522 + 2 tokens) and CLIP ViT-L/14
        blip_model = BlipForConditionalGeneration(BlipConfig()).eval()
        clip_model = CLIPModel(CLIPConfig(
            text_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                         "num_attention_heads": 12},
            vision_config={"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                           "num_attention_heads": 16, "image_size": 224, "patch_size": 14},
            projection_dim=768)).eval()
        tiny_blip_clip.write_blip(root / "BLIP", blip_model)
        vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        vocab += ["a", "picture", "of"] + [f"w{i}" for i in range(30522 - len(vocab) - 3)]
        (root / "BLIP" / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (root / "CLIP").mkdir(exist_ok=True)
    save_file(tiny_blip_clip.clip_openai(clip_model), str(root / "CLIP" / "ViT-L-14.safetensors"))
    params = (sum(p.numel() for p in blip_model.parameters()), sum(p.numel() for p in clip_model.parameters()))
    del blip_model, clip_model
    service = Interrogator([], blip_dirs=[root / "BLIP"], clip_dirs=[root / "CLIP"])
    settings = {"interrogate_keep_models_in_memory": True, "interrogate_clip_num_beams": 1,
                "interrogate_clip_min_length": 24, "interrogate_clip_max_length": 48}
    first, median = timed_captions(service, picture, "clip", settings, args.repeats)  # the first loads both
    print(f"  Interrogate CLIP: BLIP {params[0] / 1e6:.0f} M + CLIP {params[1] / 1e6:.0f} M parameters, "
          f"{torch.get_num_threads()} threads")
    print(f"  load + first caption {first:.2f} s, caption {median:.2f} s (median of {max(1, args.repeats)}, "
          f"BLIP to 48 tokens, 60 phrases ranked)")


if __name__ == "__main__":
    raise SystemExit(main())
