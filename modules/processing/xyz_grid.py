"""The pure parts of A1111's X/Y/Z plot: axis value syntax and the labelled grid (no models, no UI).

Value syntax, as A1111's: comma-separated values (quoted like CSV when a value holds a comma); for numbers also
ranges ``1-5`` (every integer), ``1-10 (+2)`` (a step, ``(-2)`` downward), ``1-10 [5]`` (five values evenly spread);
the float forms take decimals (``0.5-1 (+0.25)``, ``0-1 [5]``).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MAX_VALUES = 1000  # values on one axis; a typo like 1-100000 is refused, not queued

_INT = r"[+-]?\s*\d+"
_FLOAT = r"[+-]?\s*\d+(?:\.\d*)?"
_STEP_INT = re.compile(rf"^\s*({_INT})\s*-\s*({_INT})(?:\s*\(\s*([+-]?\d+)\s*\))?\s*$")
_COUNT_INT = re.compile(rf"^\s*({_INT})\s*-\s*({_INT})\s*\[\s*(\d+)\s*\]\s*$")
_STEP_FLOAT = re.compile(rf"^\s*({_FLOAT})\s*-\s*({_FLOAT})(?:\s*\(\s*([+-]?\d+(?:\.\d*)?)\s*\))?\s*$")
_COUNT_FLOAT = re.compile(rf"^\s*({_FLOAT})\s*-\s*({_FLOAT})\s*\[\s*(\d+)\s*\]\s*$")


class AxisValueError(ValueError):
    """A value list that cannot be read; the message says which entry and why."""


def split_values(text: str) -> list[str]:
    """Comma-separated entries, trimmed, CSV quoting honoured, empty entries dropped."""
    if not text or not text.strip():
        return []
    rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    return [entry.strip() for row in rows for entry in row if entry.strip()]


def _num(text: str) -> str:
    return text.replace(" ", "")


def expand_ints(entries: Sequence[str]) -> list[int]:
    out: list[int] = []
    for entry in entries:
        if match := _COUNT_INT.match(entry):
            start, end, count = int(_num(match[1])), int(_num(match[2])), int(match[3])
            out += [int(v) for v in np.linspace(start, end, count).astype(int)]
        elif match := _STEP_INT.match(entry):
            start, end = int(_num(match[1])), int(_num(match[2]))
            step = int(match[3]) if match[3] else (1 if end >= start else -1)
            if step == 0:
                raise AxisValueError(f"{entry!r}: the step cannot be 0")
            out += list(range(start, end + (1 if step > 0 else -1), step))
        else:
            try:
                out.append(int(float(entry)) if float(entry).is_integer() else _not_int(entry))
            except ValueError as err:
                raise AxisValueError(f"{entry!r} is not a whole number or a range like 1-5") from err
        _check_count(out)
    return out


def _not_int(entry: str) -> int:
    raise ValueError(entry)


def expand_floats(entries: Sequence[str]) -> list[float]:
    out: list[float] = []
    for entry in entries:
        if match := _COUNT_FLOAT.match(entry):
            start, end, count = float(_num(match[1])), float(_num(match[2])), int(match[3])
            out += [float(v) for v in np.linspace(start, end, count)]
        elif (match := _STEP_FLOAT.match(entry)) and match[3]:
            start, end, step = float(_num(match[1])), float(_num(match[2])), float(match[3])
            if step == 0 or (end - start) * step < 0:
                raise AxisValueError(f"{entry!r}: the step must lead from {start} to {end}")
            count = int(np.floor((end - start) / step + 1e-9)) + 1
            out += [round(start + i * step, 10) for i in range(count)]
        elif match and not match[3] and "-" in entry.strip().lstrip("+-"):
            start, end = float(_num(match[1])), float(_num(match[2]))
            out += [float(v) for v in np.arange(start, end + 1, 1.0 if end >= start else -1.0)]
        else:
            try:
                out.append(float(entry))
            except ValueError as err:
                raise AxisValueError(f"{entry!r} is not a number or a range like 0.5-1 (+0.25)") from err
        _check_count(out)
    return out


def _check_count(values: list[Any]) -> None:
    if len(values) > MAX_VALUES:
        raise AxisValueError(f"more than {MAX_VALUES} values on one axis")


# -- the labelled grid --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GridAnnotation:
    """One label line (A1111's ``images.GridAnnotation``); inactive lines are drawn grey."""

    text: str = ""
    is_active: bool = True


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one size
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}".strip()
            if line and draw.textlength(candidate, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def draw_grid_annotations(grid: Image.Image, width: int, height: int, hor_texts: Sequence[Sequence[GridAnnotation]],
                          ver_texts: Sequence[Sequence[GridAnnotation]], margin: int = 0) -> Image.Image:
    """``grid`` (cells of ``width`` x ``height``) with column labels above and row labels to the left, A1111's
    layout: the left band is 3/4 of a cell wide when there are row labels; the top band is as tall as the
    tallest column label; ``margin`` pixels between cells."""
    cols = max(1, len(hor_texts))
    rows = max(1, len(ver_texts))
    fontsize = max(8, (width + height) // 25)
    spacing = fontsize // 2
    font = _font(fontsize)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_height = fontsize + spacing

    def wrapped(annotations: Sequence[GridAnnotation], wrap_width: int) -> list[tuple[str, bool]]:
        return [(line, a.is_active) for a in annotations for line in _wrap(probe, a.text, font, wrap_width)
                if a.text]

    hor = [wrapped(texts, width) for texts in hor_texts]
    ver = [wrapped(texts, width * 3 // 4) for texts in ver_texts]
    pad_left = width * 3 // 4 if any(ver) else 0
    pad_top = max((len(lines) * line_height - spacing for lines in hor), default=0)
    pad_top = pad_top + spacing * 2 if pad_top > 0 else 0
    result = Image.new("RGB", (pad_left + cols * width + margin * (cols - 1),
                               pad_top + rows * height + margin * (rows - 1)), "white")
    for row in range(rows):
        for col in range(cols):
            cell = grid.crop((col * width, row * height, (col + 1) * width, (row + 1) * height))
            result.paste(cell, (pad_left + col * (width + margin), pad_top + row * (height + margin)))
    draw = ImageDraw.Draw(result)

    def block(lines: list[tuple[str, bool]], cx: float, cy: float) -> None:
        y = cy - (len(lines) * line_height - spacing) / 2
        for text, active in lines:
            draw.text((cx, y + fontsize / 2), text, font=font, anchor="mm",
                      fill=(0, 0, 0) if active else (153, 153, 153))
            y += line_height

    for col, lines in enumerate(hor):
        block(lines, pad_left + col * (width + margin) + width / 2, pad_top / 2)
    for row, lines in enumerate(ver):
        block(lines, pad_left / 2, pad_top + row * (height + margin) + height / 2)
    return result


def cell_grid(images: Sequence[Image.Image], cols: int, width: int, height: int) -> Image.Image:
    """Cells in rows of ``cols``, each resized to ``width`` x ``height`` when it differs (a Size axis)."""
    rows = (len(images) + cols - 1) // cols
    grid = Image.new("RGB", (cols * width, rows * height), "black")
    for index, image in enumerate(images):
        cell = image if image.size == (width, height) else image.resize((width, height), Image.LANCZOS)
        grid.paste(cell.convert("RGB"), ((index % cols) * width, (index // cols) * height))
    return grid
