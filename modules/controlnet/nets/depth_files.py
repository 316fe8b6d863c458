"""What the depth converters share: reading an original file, checking what it holds, splitting fused attention
weights, loading the converted tensors into a transformers model, and the extension's resize rule.

sd-webui-controlnet's depth files (``dpt_hybrid-midas-501f0c75.pt``, ``depth_anything_vitl14.pth``,
``ZoeD_M12_N.pt``) are state dicts of the original research code (timm / DINOv2 / MiDaS module names). Each
converter renames them to a transformers depth model built from a config made here from the tensors' sizes, so no
hub download or config file is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np
import torch

Bad = Callable[[Path, str], ValueError]


def bad_file(network: str, file: str, layout: str) -> Bad:
    """The ValueError a wrong file gets: the file's name, the network it should hold, what is wrong, the layout."""
    def bad(path: Path, why: str) -> ValueError:
        return ValueError(f"{Path(path).name}: not the {network} ({file}): {why}; expected {layout}")

    return bad


def read(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors through the safe loader (a ModelFileError when damaged or unsafe); a training checkpoint's
    ``model`` / ``state_dict`` entry is unwrapped there; a DataParallel ``module.`` prefix is dropped."""
    from modules.models.formats import load_state_dict

    sd = load_state_dict(path)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def require(path: Path, sd: dict[str, torch.Tensor], keys: Iterable[str], bad: Bad) -> None:
    """The tensors the config is read from must be there before their sizes are used."""
    missing = [k for k in keys if k not in sd]
    if missing:
        raise bad(path, f"no {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} tensor")


def count_indexed(sd: dict[str, torch.Tensor], prefix: str) -> int:
    """How many ``prefix<i>.`` blocks there are (0..n-1, all present)."""
    found = {int(k[len(prefix):].split(".", 1)[0]) for k in sd if k.startswith(prefix)
             and k[len(prefix):].split(".", 1)[0].isdigit()}
    n = 0
    while n in found:
        n += 1
    return n


def split_qkv(out: dict[str, torch.Tensor], weight: torch.Tensor, bias: torch.Tensor | None, prefix: str,
              names: tuple[str, str, str] = ("q_proj", "k_proj", "v_proj")) -> None:
    """A fused (3D, D) attention input projection (timm's / DINOv2's ``qkv``, rows in q, k, v order) ->
    ``<prefix><q>/<k>/<v>.weight/bias`` (transformers 5 names them q_proj, k_proj, v_proj)."""
    for name, w in zip(names, weight.chunk(3, dim=0)):
        out[f"{prefix}{name}.weight"] = w
    if bias is not None:
        for name, b in zip(names, bias.chunk(3, dim=0)):
            out[f"{prefix}{name}.bias"] = b


def load_into(path: Path, model: torch.nn.Module, converted: dict[str, torch.Tensor], bad: Bad,
              optional: Iterable[str] = ()) -> torch.nn.Module:
    """``converted`` into ``model`` (fp32, eval): every key and shape checked first, so a file of another network
    is one sentence rather than torch's report. ``optional``: model keys a file may lack (kept as built)."""
    from modules.controlnet.nets.hed import check_layout

    expected = {k: v.shape for k, v in model.state_dict().items()}
    for key in optional:
        if key not in converted and key in expected:
            converted[key] = model.state_dict()[key]
    check_layout(path, converted, expected, bad)
    model.load_state_dict({k: v.float() for k, v in converted.items()}, strict=True)
    return model.float().eval()


def build(path: Path, required: Iterable[str], bad: Bad,
          convert: Callable[[dict[str, torch.Tensor]], tuple[dict[str, torch.Tensor], list[str]]],
          make_model: Callable[[dict[str, torch.Tensor]], Any], optional: Iterable[str] = ()) -> Any:
    """The steps every depth file goes through: read it (safe loader), check the keys its layout must have, rename
    to transformers' names (a key with no place is a clear error, never silently dropped), build the model from
    the tensor sizes (``make_model(state dict)``) and load the weights, checked key by key."""
    path = Path(path)
    sd = read(path)
    require(path, sd, required, bad)
    converted, unplaced = convert(sd)
    if unplaced:
        raise bad(path, f"{len(unplaced)} unexpected keys ({', '.join(unplaced[:4])}"
                        f"{' ...' if len(unplaced) > 4 else ''})")
    try:
        model = make_model(sd)
    except (ValueError, IndexError, KeyError, RuntimeError) as err:
        raise bad(path, f"its tensor sizes make no model ({err})") from None
    return load_into(path, model, converted, bad, optional=optional)


def fit(h: int, w: int, height: int, width: int, multiple: int, method: str) -> tuple[int, int]:
    """The original repos' ``Resize`` size with keep_aspect_ratio: one scale for both sides, the one that brings the
    image to ``height`` x ``width`` ("lower_bound": both sides at least that; "minimal": the scale nearest 1), each
    side then rounded to a multiple of ``multiple`` (up, for lower_bound, when rounding would go under)."""
    scale_h, scale_w = height / h, width / w
    if method == "lower_bound":
        scale_h = scale_w = max(scale_h, scale_w)
    elif abs(1 - scale_w) < abs(1 - scale_h):
        scale_h = scale_w
    else:
        scale_w = scale_h

    def side(x: float, least: int) -> int:
        y = int(np.round(x / multiple) * multiple)
        if method == "lower_bound" and y < least:
            y = int(np.ceil(x / multiple) * multiple)
        return max(y, multiple)

    return side(scale_h * h, height), side(scale_w * w, width)


def resize_to_multiple(image: np.ndarray, size: int, multiple: int, method: str) -> np.ndarray:
    """``fit`` to ``size`` x ``size`` with bicubic interpolation (cv2, as Depth Anything's transform resizes)."""
    new_h, new_w = fit(image.shape[0], image.shape[1], size, size, multiple, method)
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_CUBIC)
