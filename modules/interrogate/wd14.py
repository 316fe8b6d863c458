"""SmilingWolf's WD14 taggers (``wd-vit-tagger-v3``, ``wd-v1-4-moat-tagger-v2``, ``wd-swinv2-tagger-v3``...) as
users download them from the hub: a folder in ``models/wd14/`` holding ``model.onnx`` and ``selected_tags.csv``
(``tag_id,name,category,count``; category 9 = rating, 0 = general, 4 = character), run by onnxruntime.

The image is prepared as the models' reference tagger prepares it: transparency on white, padded to a centred
white square, resized (bicubic) to the model's input size, as BGR float32 0-255 in NHWC. The output is one
probability per tag. A caption lists the general tags at or above the general threshold and the characters at or
above the character threshold, formatted as A1111 formats DeepBooru's tags (``tags``); the rating is the most
probable of the rating tags.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

MODEL_FILE, TAGS_FILE = "model.onnx", "selected_tags.csv"
RATING, GENERAL, CHARACTER = 9, 0, 4
DEFAULT_SIZE = 448


@dataclass(frozen=True)
class Prediction:
    ratings: dict[str, float]
    general: dict[str, float]  # every general tag's probability
    characters: dict[str, float]

    @property
    def rating(self) -> str:
        return max(self.ratings, key=self.ratings.__getitem__) if self.ratings else ""


@dataclass
class Tagger:
    name: str
    session: Any  # onnxruntime.InferenceSession
    input_name: str
    size: int
    names: list[str]
    categories: list[int]


def find(dirs: Sequence[Path]) -> dict[str, Path]:
    """Tagger folders (name -> folder) in ``dirs``: each sub-folder with both files, sorted by name."""
    found: dict[str, Path] = {}
    for root in dirs:
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and (folder / MODEL_FILE).is_file() and (folder / TAGS_FILE).is_file():
                found.setdefault(folder.name, folder)
    return found


def read_tags(path: Path) -> tuple[list[str], list[int]]:
    """``selected_tags.csv``'s names and categories, in the model's output order."""
    names, categories = [], []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"name", "category"} <= set(reader.fieldnames):
            raise ValueError(f"{path.name} has no name and category columns ({path})")
        for row in reader:
            names.append(row["name"])
            categories.append(int(row["category"]))
    if not names:
        raise ValueError(f"{path.name} lists no tags ({path})")
    return names, categories


def load(folder: Path, gpu: bool = False) -> Tagger:
    """The tagger in ``folder``; a damaged or mismatched pair of files is a ValueError naming the file."""
    from modules.onnx_sessions import open_session

    names, categories = read_tags(folder / TAGS_FILE)
    session = open_session(folder / MODEL_FILE, gpu=gpu)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = inputs[0].shape if len(inputs) == 1 else []
    if len(shape) != 4 or shape[3] != 3:
        found = ", ".join(f"{i.name} {i.shape}" for i in inputs) or "none"
        raise ValueError(f"{MODEL_FILE} in {folder} is not a WD14 tagger: expected one image input of shape "
                         f"1xHxWx3, found {found}")
    size = shape[1] if isinstance(shape[1], int) and shape[1] > 0 else DEFAULT_SIZE
    width = outputs[0].shape[-1] if outputs else None
    if isinstance(width, int) and width != len(names):
        raise ValueError(f"{TAGS_FILE} in {folder} lists {len(names)} tags but {MODEL_FILE} scores {width}")
    return Tagger(folder.name, session, inputs[0].name, int(size), names, categories)


def prepare(image: Image.Image, size: int) -> np.ndarray:
    """The model's input (1, size, size, 3): BGR float32 in 0-255, the image centred on a white square."""
    rgba = image.convert("RGBA")
    flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat.alpha_composite(rgba)
    rgb = flat.convert("RGB")
    side = max(rgb.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
    if side != size:
        square = square.resize((size, size), Image.Resampling.BICUBIC)
    array = np.asarray(square, dtype=np.float32)[:, :, ::-1]
    return np.ascontiguousarray(array[None])


def predict(tagger: Tagger, image: Image.Image) -> Prediction:
    scores = tagger.session.run(None, {tagger.input_name: prepare(image, tagger.size)})[0][0]
    if len(scores) != len(tagger.names):
        raise ValueError(f"the {tagger.name} tagger scored {len(scores)} tags, its {TAGS_FILE} lists "
                         f"{len(tagger.names)}")
    groups: dict[int, dict[str, float]] = {RATING: {}, GENERAL: {}, CHARACTER: {}}
    for name, category, score in zip(tagger.names, tagger.categories, scores.tolist()):
        if category in groups:
            groups[category].setdefault(name, float(score))
    return Prediction(groups[RATING], groups[GENERAL], groups[CHARACTER])
