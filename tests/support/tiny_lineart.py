"""Random-weight lineart annotator files in the real key layouts, under the names users download.

* ``sk_model.pth`` / ``sk_model2.pth`` (lineart_realistic / lineart_coarse): the Informative Drawings generator,
  ``model0.1`` stem, ``model1.<0,3>`` downsamplings, ``model2.<i>.conv_block.<1,5>`` residual blocks,
  ``model3.<0,3>`` transposed convs, ``model4.1`` head. The real files have width 64 and 3 residual blocks.
* ``netG.pth`` (lineart_anime): the pix2pix U-Net, ``model.model.0`` ... nested one ``3.model.`` per level. The
  real file has ngf 64 and 8 levels (~200 MB), and may carry a ``module.`` prefix (DataParallel).

The key lists are written out here from the layouts, not taken from our loader, so a loader bug cannot hide behind
a matching bug in the fixture. Saved with ``torch.save`` as plain dicts, like the originals.
"""

from __future__ import annotations

from pathlib import Path

import torch

REAL_LINEART = {"width": 64, "residual_blocks": 3}
REAL_NETG = {"ngf": 64, "depth": 8}


def _conv(g: torch.Generator, out_c: int, in_c: int, k: int, transposed: bool = False) -> dict[str, torch.Tensor]:
    # Kaiming-like scale so the instance-normalised activations and the sigmoid/tanh outputs stay spread out.
    shape = (in_c, out_c, k, k) if transposed else (out_c, in_c, k, k)
    w = torch.randn(shape, generator=g) / (in_c * k * k) ** 0.5
    return {"weight": w, "bias": torch.randn(out_c, generator=g) * 0.1}


def lineart_state_dict(width: int = 4, residual_blocks: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def put(name: str, tensors: dict[str, torch.Tensor]) -> None:
        sd.update({f"{name}.{k}": v for k, v in tensors.items()})

    put("model0.1", _conv(g, width, 3, 7))
    put("model1.0", _conv(g, 2 * width, width, 3))
    put("model1.3", _conv(g, 4 * width, 2 * width, 3))
    for i in range(residual_blocks):
        put(f"model2.{i}.conv_block.1", _conv(g, 4 * width, 4 * width, 3))
        put(f"model2.{i}.conv_block.5", _conv(g, 4 * width, 4 * width, 3))
    put("model3.0", _conv(g, 2 * width, 4 * width, 3, transposed=True))
    put("model3.3", _conv(g, width, 2 * width, 3, transposed=True))
    put("model4.1", _conv(g, 1, width, 7))
    return sd


def write_lineart(folder: Path, name: str = "sk_model.pth", *, width: int = 4, residual_blocks: int = 2,
                  seed: int = 0, real_size: bool = False) -> Path:
    """A lineart generator file (``real_size``: the real files' width 64 and 3 residual blocks)."""
    if real_size:
        width, residual_blocks = REAL_LINEART["width"], REAL_LINEART["residual_blocks"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save(lineart_state_dict(width, residual_blocks, seed), path)
    return path


def netg_state_dict(ngf: int = 4, depth: int = 8, seed: int = 0, module_prefix: bool = False,
                    ) -> dict[str, torch.Tensor]:
    """pix2pix ``UnetGenerator(3, 1, depth, ngf)`` keys: widths ngf, 2, 4, 8 ngf, then 8 ngf down to the innermost."""
    if depth < 5:
        raise ValueError("the pix2pix U-Net has at least 5 levels")
    g = torch.Generator().manual_seed(seed)
    widths = [3] + [ngf * min(2 ** i, 8) for i in range(depth)]  # input of level i = widths[i], its inner widths[i+1]
    sd: dict[str, torch.Tensor] = {}
    for level in range(depth):
        prefix = "model.model." if level == 0 else "model.model.1.model." + "3.model." * (level - 1)
        outer, inner = widths[level], widths[level + 1]
        down_index = 0 if level == 0 else 1
        up_index = 3 if level in (0, depth - 1) else 5
        up_in = inner if level == depth - 1 else 2 * inner
        up_out = 1 if level == 0 else outer
        for k, v in _conv(g, inner, outer, 4).items():
            sd[f"{prefix}{down_index}.{k}"] = v
        for k, v in _conv(g, up_out, up_in, 4, transposed=True).items():
            sd[f"{prefix}{up_index}.{k}"] = v
    if module_prefix:
        sd = {f"module.{k}": v for k, v in sd.items()}
    return sd


def write_netg(folder: Path, name: str = "netG.pth", *, ngf: int = 4, depth: int = 8, seed: int = 0,
               module_prefix: bool = False) -> Path:
    """A lineart_anime U-Net file (ngf 64, depth 8 is the real size: ~200 MB, slow to write)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save(netg_state_dict(ngf, depth, seed, module_prefix), path)
    return path
