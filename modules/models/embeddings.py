"""Textual-inversion embeddings: find the files, read them safely, and decide which ones fit the loaded model.

A1111 contract 3.6 (``modules/textual_inversion/textual_inversion.py``):

* Folders (``Paths.model_dirs("embeddings")``: ``<data>/embeddings``, ``models/embeddings``, ``--embeddings-dir``) are
  scanned recursively. Files: ``.pt``, ``.bin``, ``.safetensors``, and ``.png``/``.webp``/``.avif``/``.jxl`` carrying
  an embedding (an ``sd-ti-embedding`` PNG text chunk, or A1111's data hidden in the image's pixels). Images without
  embedded data are previews and ignored, like ``*.preview.<ext>``.
* The trigger word is the file name without its extension (for image embeddings: the ``name`` stored in the data).
* Formats: A1111/original TI pickles (``string_to_param: {"*": (n, w)}`` + ``name``/``step``/``sd_checkpoint``/
  ``sd_checkpoint_name``; a ``ParameterDict`` from the original repository is accepted), the ``emb_params`` form,
  diffusers concepts (``{token: (w,) or (n, w)}``, usually ``learned_embeds.bin``) and SDXL/kohya files
  (``clip_l`` (n, 768) + ``clip_g`` (n, 1280)).
* An embedding "fits" when its vectors have the width of the model's text encoder(s); the others are *skipped*,
  with the reason. Unreadable, unsafe or unrecognised files are skipped too, never raised out of a scan.
* The folders are re-checked before each generation (``load_for``): only a changed signature (names, sizes and mtimes
  of the candidate files, in every sub-folder) triggers a re-read, and only changed files are read again.

Reading goes through ``modules.models.formats``: safetensors by their bytes, pickles only with torch's weights-only
unpickler, so a hostile file gives ``UnsafeFileError`` and never runs code. Image data is JSON (numbers only).

Conditioning takes ``EmbeddingSet.vectors()`` (``{name: {slot: (n, width)}}``) and finds the trigger words in the
token ids itself (``modules.processing.conditioning.EmbeddingLookup``, longest name first, as A1111 matches).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules import hashing
from modules.models import formats
from modules.models.scan import FoundFile, natural_sort_key, walk_files
from modules.models.types import CorruptFileError, ModelFileError

if TYPE_CHECKING:
    import torch

    from modules.hashing import HashCache
    from modules.paths import Paths

log = logging.getLogger(__name__)

WEIGHT_EXTENSIONS = (".pt", ".bin", ".safetensors")
IMAGE_EXTENSIONS = (".png", ".webp", ".jxl", ".avif")
EMBEDDING_EXTENSIONS = WEIGHT_EXTENSIONS + IMAGE_EXTENSIONS

# The largest real embeddings (75 vectors of SDXL's 2048 floats) are well under 1 MB; anything this big is a
# checkpoint or a LoRA put into the wrong folder, and reading it would cost seconds and gigabytes at every scan.
MAX_EMBEDDING_BYTES = 64 << 20
MAX_IMAGE_DATA_BYTES = 64 << 20  # decompressed JSON hidden in an image's pixels
MAX_PIXEL_DATA_ELEMENTS = 4_000_000  # a larger "data block" is not A1111's embedding encoding
IMAGE_TEXT_KEY = "sd-ti-embedding"

SLOTS = ("text_encoder", "text_encoder_2")

# Skip kinds (``SkippedEmbedding.kind``): the ModelFileError kinds, plus these.
KIND_INCOMPATIBLE = "incompatible"  # readable, but made for another model family / width
KIND_INVALID = "invalid"  # readable weights that are not an embedding (LoRA, checkpoint, odd shapes)
KIND_DUPLICATE = "duplicate"  # another embedding of the same name is already loaded
KIND_UNSUPPORTED = "unsupported"  # a format we cannot read (yet)
KIND_TOO_LARGE = "too-large"
KIND_NOT_A_FILE = "not-a-file"


class NotAnEmbedding(ModelFileError):
    """Readable, safe data that is not one textual-inversion embedding."""

    kind = KIND_INVALID


class UnsupportedEmbedding(ModelFileError):
    """A file type we cannot read (an image format Pillow cannot open here)."""

    kind = KIND_UNSUPPORTED


# ---------------------------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, eq=False)
class EmbeddingFile:
    """One parsed file, independent of any model. ``tensors``: ``{"vec": (n, w)}`` or ``{"clip_l", "clip_g"}``."""

    name: str
    path: Path
    tensors: dict[str, torch.Tensor]
    format: str  # "a1111", "emb_params", "diffusers", "sdxl", "image-text", "image-pixels"
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    sha256: str | None = None

    @property
    def is_sdxl_pair(self) -> bool:
        return "clip_l" in self.tensors

    @property
    def vector_count(self) -> int:
        t = self.tensors["clip_g"] if self.is_sdxl_pair else self.tensors["vec"]
        return int(t.shape[0])

    @property
    def shape(self) -> int:
        """A1111's ``shape``: the vector width; for SDXL files clip_l + clip_g widths (768 + 1280 = 2048)."""
        return sum(int(t.shape[-1]) for t in self.tensors.values())

    def describe_widths(self) -> str:
        if self.is_sdxl_pair:
            w_l, w_g = self.tensors["clip_l"].shape[-1], self.tensors["clip_g"].shape[-1]
            return f"an SDXL embedding (clip_l {w_l} + clip_g {w_g} wide)"
        return f"{self.tensors['vec'].shape[-1]}-wide vectors"


@dataclass(frozen=True, eq=False)
class Embedding:
    """An embedding that fits the loaded model: ``vectors[slot]`` is ``(vector_count, width)`` float32 on the CPU."""

    name: str
    path: Path
    vectors: dict[str, torch.Tensor]
    vector_count: int
    shape: int
    step: int | None
    sd_checkpoint: str | None
    sd_checkpoint_name: str | None
    sha256: str | None
    format: str

    @property
    def shorthash(self) -> str | None:
        """The 12 hex printed in ``TI hashes`` (None when hashing is off and the hash is not cached)."""
        return self.sha256[:12] if self.sha256 else None

    @property
    def filename(self) -> str:
        return str(self.path)

    def api_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "sd_checkpoint": self.sd_checkpoint,
            "sd_checkpoint_name": self.sd_checkpoint_name,
            "shape": self.shape,
            "vectors": self.vector_count,
        }


@dataclass(frozen=True)
class SkippedEmbedding:
    """A file that is not used with the loaded model, and why. Shape fields are None when the file was unreadable."""

    name: str
    path: Path
    kind: str
    reason: str
    shape: int | None = None
    vector_count: int | None = None
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None

    def api_dict(self, with_reason: bool = False) -> dict[str, Any]:
        # A1111's EmbeddingItem types shape/vectors as int: 0 stands for "unknown" (unreadable file).
        out: dict[str, Any] = {
            "step": self.step,
            "sd_checkpoint": self.sd_checkpoint,
            "sd_checkpoint_name": self.sd_checkpoint_name,
            "shape": self.shape or 0,
            "vectors": self.vector_count or 0,
        }
        if with_reason:
            out["reason"] = self.reason
            out["kind"] = self.kind
        return out


def _skipped_from(file: EmbeddingFile, kind: str, reason: str) -> SkippedEmbedding:
    return SkippedEmbedding(
        file.name, file.path, kind, reason, file.shape, file.vector_count, file.step, file.sd_checkpoint,
        file.sd_checkpoint_name,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Parsing


def _is_tensor(x: Any) -> bool:
    import torch

    return isinstance(x, torch.Tensor)


def _vectors(path: Path, t: Any, what: str) -> torch.Tensor:
    """A (n, w) float32 CPU copy (so the file can be replaced or deleted while the embedding is in use)."""
    import torch

    if not isinstance(t, torch.Tensor):
        raise NotAnEmbedding(path, f"{what} is a {type(t).__name__}, not a tensor")
    if not t.is_floating_point():
        raise NotAnEmbedding(path, f"{what} holds {t.dtype} values, not floating-point vectors")
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise NotAnEmbedding(path, f"{what} has shape {tuple(t.shape)}; expected (vectors, width)")
    return t.detach().to(device="cpu", dtype=torch.float32, copy=True).contiguous()


def _opt_str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _opt_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if _is_tensor(v) and v.numel() == 1 and not v.is_floating_point():
        return int(v.item())
    return None


def parse_embedding_data(data: Any, path: str | Path, name: str, fmt_hint: str = "") -> EmbeddingFile:
    """Recognise one embedding in already-loaded data (a dict). Raises NotAnEmbedding with a reason otherwise."""
    path = Path(path)
    if not isinstance(data, Mapping):
        raise NotAnEmbedding(path, f"the file holds a {type(data).__name__}, not an embedding")
    tensors: dict[str, torch.Tensor]
    if "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)  # torch.nn.ParameterDict from the original TI repository
        if not isinstance(params, Mapping) or not params:
            raise NotAnEmbedding(path, "string_to_param holds no vectors")
        if len(params) != 1:
            raise NotAnEmbedding(path, f"the file has {len(params)} terms in it; one embedding per file is supported")
        tensors = {"vec": _vectors(path, next(iter(params.values())), "string_to_param")}
        fmt = fmt_hint or "a1111"
    elif "clip_l" in data and "clip_g" in data:
        tensors = {k: _vectors(path, data[k], k) for k in ("clip_l", "clip_g")}
        if tensors["clip_l"].shape[0] != tensors["clip_g"].shape[0]:
            raise NotAnEmbedding(
                path, f"clip_l has {tensors['clip_l'].shape[0]} vectors but clip_g has {tensors['clip_g'].shape[0]}"
            )
        fmt = fmt_hint or "sdxl"
    elif "emb_params" in data:
        tensors = {"vec": _vectors(path, data["emb_params"], "emb_params")}
        fmt = fmt_hint or "emb_params"
    else:
        found = [(k, v) for k, v in data.items() if _is_tensor(v)]
        if len(found) != 1:
            if not found:
                raise NotAnEmbedding(path, "no embedding vectors found (neither string_to_param, clip_l/clip_g, "
                                           "emb_params nor a single tensor)")
            keys = ", ".join(str(k) for k, _ in found[:3])
            raise NotAnEmbedding(
                path, f"{len(found)} tensors ({keys}{', ...' if len(found) > 3 else ''}): not an embedding "
                      "(a LoRA or a checkpoint in the embeddings folder?)"
            )
        key, value = found[0]
        tensors = {"vec": _vectors(path, value, repr(str(key)))}
        fmt = fmt_hint or "diffusers"
    return EmbeddingFile(
        name=name,
        path=path,
        tensors=tensors,
        format=fmt,
        step=_opt_int(data.get("step")),
        # A1111 writes the checkpoint's old hash as "sd_checkpoint" (and reads it from there; very old files: "hash")
        sd_checkpoint=_opt_str(data.get("sd_checkpoint")),
        sd_checkpoint_name=_opt_str(data.get("sd_checkpoint_name")),
    )


@contextmanager
def _allow_parameter_dict() -> Iterator[None]:
    """Let the weights-only unpickler rebuild ``torch.nn.ParameterDict`` (its state is parameters only, no code)."""
    import torch

    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:
        yield
        return
    with safe_globals([torch.nn.ParameterDict]):
        yield


def _read_weights_object(path: Path) -> Any:
    """The file's content: a dict of tensors (safetensors) or the unpickled object (weights-only).

    ``formats.load_state_dict`` keeps only top-level tensors, which loses A1111's nested ``string_to_param``; so
    pickles go through the same weights-only reader it uses (same errors: UnsafeFileError, CorruptFileError...).
    """
    fmt = formats.sniff_format(path)
    if fmt in ("zip-pickle", "legacy-pickle"):
        with _allow_parameter_dict():
            return formats._load_pickle(path, fmt, "cpu")
    return formats.load_state_dict(path, device="cpu")  # safetensors, or the standard "not a model file" error


class _TensorJSON(json.JSONDecoder):
    """A1111's image payload: JSON where tensors are ``{"TORCHTENSOR": nested lists}``."""

    def __init__(self) -> None:
        super().__init__(object_hook=self._hook)

    @staticmethod
    def _hook(d: dict[str, Any]) -> Any:
        if "TORCHTENSOR" in d:
            import numpy as np
            import torch

            arr = np.asarray(d["TORCHTENSOR"], dtype=np.float64)  # ValueError/TypeError for anything but numbers
            return torch.from_numpy(arr)
        return d


def _decode_json(path: Path, raw: bytes | str, where: str) -> Any:
    try:
        return _TensorJSON().decode(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (ValueError, TypeError, RecursionError, UnicodeDecodeError) as e:
        raise CorruptFileError(path, f"damaged image embedding: the {where} is not valid JSON ({e})") from None


def _lcg_mask(count: int) -> Any:
    """A1111's xor stream: an LCG (a=1664525, c=1013904223, m=2**32, seed 0), each value mod 255, low nibble."""
    import numpy as np

    out = np.empty(count, dtype=np.uint8)
    seed = 0
    for i in range(count):
        seed = (1664525 * seed + 1013904223) & 0xFFFFFFFF
        out[i] = (seed % 255) & 0x0F
    return out


def _crop_black(arr: Any) -> Any:
    lit = (arr > 0).all(axis=2)
    cols, rows = lit.any(axis=0), lit.any(axis=1)
    if not cols.any():
        return arr
    c0, c1 = int(cols.argmax()), arr.shape[1] - int(cols[::-1].argmax())
    r0, r1 = int(rows.argmax()), arr.shape[0] - int(rows[::-1].argmax())
    return arr[r0:r1, c0:c1]


def _pixel_payload(image: Any) -> bytes | None:
    """The zlib stream A1111 hides in the low nibbles of two side blocks, or None for an ordinary image."""
    import numpy as np

    arr = _crop_black(np.asarray(image.convert("RGB"), dtype=np.uint8)) & 0x0F
    black = np.flatnonzero(arr.sum(axis=(0, 2)) == 0)
    if black.size < 2:
        return None
    low, high = arr[:, : black.min()], arr[:, black.max() + 1:]
    if low.shape != high.shape or low.size == 0 or low.size > MAX_PIXEL_DATA_ELEMENTS:
        return None
    mask = _lcg_mask(low.size).reshape(low.shape)
    return (((high ^ mask) << 4) | (low ^ mask)).astype(np.uint8).tobytes()


def _inflate(data: bytes) -> bytes | None:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, MAX_IMAGE_DATA_BYTES)
    except zlib.error:
        return None
    if d.unconsumed_tail:
        return None
    return out


def _read_image_embedding(path: Path) -> Any | None:
    """The embedding data of an image, or None when the image carries none (a preview picture)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - Pillow is a dependency of the app
        raise ModelFileError(path, "image embeddings need Pillow") from None
    try:
        with Image.open(path) as image:
            text = getattr(image, "text", None)  # PNG text chunks (tEXt/zTXt/iTXt)
            if isinstance(text, Mapping) and IMAGE_TEXT_KEY in text:
                try:
                    raw = base64.b64decode(text[IMAGE_TEXT_KEY])
                except (binascii.Error, ValueError) as e:
                    raise CorruptFileError(path, f"damaged image embedding: bad base64 ({e})") from None
                return _decode_json(path, raw, f"{IMAGE_TEXT_KEY} text chunk"), "image-text"
            payload = _pixel_payload(image)
    except UnidentifiedImageError:
        raise UnsupportedEmbedding(
            path, f"cannot open this {path.suffix.lower()} image here (damaged, or no Pillow support for the format): "
                  "embedded-image embeddings not supported yet for it") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # truncated, too big, chunk limits
        raise CorruptFileError(path, f"damaged or oversized image ({e})") from None
    if payload is None:
        return None
    inflated = _inflate(payload)
    if inflated is None:
        return None  # black stripes in an ordinary picture, not A1111's data
    return _decode_json(path, inflated, "data hidden in the image"), "image-pixels"


def read_embedding_file(path: str | Path, name: str | None = None) -> EmbeddingFile | None:
    """Read and recognise one file; None for an image without embedded data. Raises ModelFileError subclasses."""
    path = Path(path)
    base = name or os.path.splitext(path.name)[0]
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        found = _read_image_embedding(path)
        if found is None:
            return None
        data, fmt = found
        stored = data.get("name") if isinstance(data, Mapping) else None
        return parse_embedding_data(data, path, stored if isinstance(stored, str) and stored else base, fmt)
    return parse_embedding_data(_read_weights_object(path), path, base)


# ---------------------------------------------------------------------------------------------------------------------
# Fitting to a model


def expected_widths(model: Any) -> dict[str, int]:
    """``{slot: hidden width}`` of the model's text encoders (SD1 768, SD2 1024, SDXL 768 + 1280, refiner 1280)."""
    widths: dict[str, int] = {}
    for slot in SLOTS:
        encoder = getattr(model, slot, None)
        if encoder is None:
            continue
        width = getattr(getattr(encoder, "config", None), "hidden_size", None)
        if width is None:
            width = encoder.get_input_embeddings().weight.shape[-1]
        widths[slot] = int(width)
    return widths


_FAMILY_LABELS = {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL", "sdxl_refiner": "SDXL refiner"}


def _family(model: Any) -> str:
    family = str(getattr(getattr(model, "kind", None), "family", "") or "")
    return _FAMILY_LABELS.get(family, family or "this")


def fit(file: EmbeddingFile, widths: Mapping[str, int], family: str = "this") -> dict[str, torch.Tensor] | str:
    """The vectors per slot when ``file`` fits encoders of these widths, else the reason it does not.

    SD1/SD2 (one encoder): a single tensor of that width. SDXL (both): ``clip_l`` + ``clip_g`` of the two widths.
    SDXL refiner (``text_encoder_2`` only): ``clip_g`` of an SDXL file, or a single tensor of bigG's width (A1111
    would skip SDXL files there, their combined width being 2048; the clip_g half is exactly what the refiner's
    encoder takes).
    """
    w1, w2 = widths.get("text_encoder"), widths.get("text_encoder_2")
    t = file.tensors
    label = f"the loaded {family} model" if family != "this" else "the loaded model"
    if w1 is not None and w2 is not None:
        if file.is_sdxl_pair:
            got = (t["clip_l"].shape[-1], t["clip_g"].shape[-1])
            if got == (w1, w2):
                return {"text_encoder": t["clip_l"], "text_encoder_2": t["clip_g"]}
            return f"clip_l/clip_g are {got[0]}/{got[1]} wide; {label} needs {w1}/{w2}"
        return f"{file.describe_widths()}; {label} needs an SDXL embedding (clip_l {w1} + clip_g {w2} wide)"
    if w1 is not None:
        if file.is_sdxl_pair:
            return f"{file.describe_widths()}; {label} needs {w1}-wide vectors"
        if t["vec"].shape[-1] == w1:
            return {"text_encoder": t["vec"]}
        return f"{file.describe_widths()}; {label} needs {w1}-wide vectors"
    if w2 is not None:
        vec = t["clip_g"] if file.is_sdxl_pair else t["vec"]
        if vec.shape[-1] == w2:
            return {"text_encoder_2": vec}
        return f"{file.describe_widths()}; {label} needs {w2}-wide vectors (clip_g)"
    return f"{label} has no text encoder"


@dataclass
class EmbeddingSet:
    """The embeddings of the folders as they fit one model: what A1111 calls word_embeddings / skipped_embeddings."""

    widths: dict[str, int]
    loaded: dict[str, Embedding]  # by name, sorted case-insensitively like A1111
    skipped: dict[str, SkippedEmbedding]  # by name: the first skipped file of each name
    skipped_files: list[SkippedEmbedding] = field(default_factory=list)  # every skipped file, in scan order
    generation: int = 0

    def get(self, name: str) -> Embedding | None:
        return self.loaded.get(name)

    def vectors(self) -> dict[str, dict[str, torch.Tensor]]:
        """``{name: {slot: (n, C)}}``: what ``conditioning.PromptEncoder(embeddings=...)`` takes."""
        return {name: dict(e.vectors) for name, e in self.loaded.items()}

    def ti_hashes(self, names: Iterable[str]) -> str | None:
        """Infotext ``TI hashes`` for the trigger words a job used (e.g. ``PromptEncoder.used_embeddings``).

        Keeps the order given (A1111: first use); a set has none, so its names are sorted. Unknown names are ignored.
        """
        ordered = sorted(names, key=str.lower) if isinstance(names, (set, frozenset)) else list(names)
        return ti_hashes({n: self.loaded[n] for n in ordered if n in self.loaded})

    def api_dict(self, with_reasons: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
        """``GET /sdapi/v1/embeddings``: ``{loaded: {name: {step, sd_checkpoint, sd_checkpoint_name, shape,
        vectors}}, skipped: {...}}``; ``with_reasons`` adds ``reason``/``kind`` to the skipped entries."""
        return {
            "loaded": {name: e.api_dict() for name, e in self.loaded.items()},
            "skipped": {name: s.api_dict(with_reasons) for name, s in self.skipped.items()},
        }


def ti_hashes(used: Mapping[str, Embedding] | Iterable[Embedding]) -> str | None:
    """Infotext ``TI hashes`` value for the embeddings a prompt used, in order: ``"name: 12hex, ..."``.

    As A1111: ``:`` and ``,`` are removed from names, embeddings without a known hash are left out, None if empty.
    """
    items = used.items() if isinstance(used, Mapping) else ((e.name, e) for e in used)
    parts = [f"{name.replace(':', '').replace(',', '')}: {e.shorthash}" for name, e in items if e.shorthash]
    return ", ".join(parts) or None


# ---------------------------------------------------------------------------------------------------------------------
# The database


def _natural_key(text: str) -> list[Any]:
    return natural_sort_key(text)


def _candidate_name(filename: str) -> bool:
    lower = filename.lower()
    stem, ext = os.path.splitext(lower)
    if ext not in EMBEDDING_EXTENSIONS:
        return False
    if ext in IMAGE_EXTENSIONS and os.path.splitext(stem)[1] == ".preview":
        return False
    return True


def _stat_key(st: os.stat_result | None) -> tuple[int, int, int] | None:
    return None if st is None else (st.st_size, st.st_mtime_ns, st.st_ino)


class EmbeddingDatabase:
    """Embeddings found in ``dirs``, re-read only when the folders change, fitted per model by ``load_for``.

    ``hash_cache``: the app's HashCache (key ``textual_inversion/<name>``, A1111's); ``hashing=False`` (for
    ``--no-hashing``) uses cached hashes only. Thread-safe.
    """

    def __init__(
        self, dirs: Sequence[str | Path], hash_cache: HashCache | None = None, *, hashing: bool = True
    ) -> None:
        self.dirs = [Path(os.path.abspath(d)) for d in dirs]
        self.hash_cache = hash_cache
        self.hashing = hashing
        self._lock = threading.RLock()
        self._signature: tuple[Any, ...] | None = None
        self._parsed: dict[Path, tuple[Any, EmbeddingFile | SkippedEmbedding | None]] = {}
        self.files: list[EmbeddingFile] = []  # readable embeddings, in scan order
        self.problems: list[SkippedEmbedding] = []  # files that could not be used whatever the model
        self.generation = 0  # bumped on every re-read
        self.current: EmbeddingSet | None = None  # the set of the last load_for()
        self._last_family = "this"

    @classmethod
    def from_paths(
        cls, paths: Paths, hash_cache: HashCache | None = None, *, hashing: bool = True
    ) -> EmbeddingDatabase:
        return cls(paths.model_dirs("embeddings"), hash_cache, hashing=hashing)

    # -- scanning -------------------------------------------------------------------------------------------------

    def _candidates(self) -> list[FoundFile]:
        out: list[FoundFile] = []
        seen_real: set[str] = set()
        for root in self.dirs:
            if not root.is_dir():
                continue
            for c in walk_files(root, _candidate_name):
                real = os.path.realpath(c.path)
                if real in seen_real:
                    continue  # one file reached through two folders (a symlink, nested dirs): once
                seen_real.add(real)
                out.append(c)
        return out

    def signature(self) -> tuple[Any, ...]:
        """What the folders hold now: candidate paths with size/mtime/inode. Cheap (stat only)."""
        return tuple((str(c.path), _stat_key(c.stat), c.problem) for c in self._candidates())

    def _hash(self, path: Path, name: str) -> str | None:
        key = f"textual_inversion/{name}"
        try:
            if self.hashing:
                return hashing.sha256_file(path, self.hash_cache, key if self.hash_cache is not None else None)
            return self.hash_cache.lookup(key, path) if self.hash_cache is not None else None
        except OSError as err:
            log.warning("cannot hash embedding %s: %s", path, err)
            return None

    def _read(self, c: FoundFile) -> EmbeddingFile | SkippedEmbedding | None:
        name = os.path.splitext(c.path.name)[0]
        if c.problem is not None:
            return SkippedEmbedding(name, c.path, KIND_NOT_A_FILE, f"{c.path.name}: {c.problem}")
        assert c.stat is not None
        if c.stat.st_size > MAX_EMBEDDING_BYTES:
            return SkippedEmbedding(
                name, c.path, KIND_TOO_LARGE,
                f"{c.path.name}: {c.stat.st_size / 2**20:.0f} MB is far too large for an embedding "
                "(a checkpoint or LoRA in the embeddings folder?)",
            )
        try:
            parsed = read_embedding_file(c.path)
        except ModelFileError as err:
            return SkippedEmbedding(name, c.path, err.kind, str(err))
        except Exception as err:  # never let one odd file stop the scan
            log.debug("embedding %s", c.path, exc_info=True)
            reason = f"{c.path.name}: cannot read ({type(err).__name__}: {err})"
            return SkippedEmbedding(name, c.path, KIND_INVALID, reason)
        if parsed is None:
            return None
        return replace(parsed, sha256=self._hash(c.path, parsed.name))

    def scan(self, force: bool = False) -> bool:
        """Re-read the folders if they changed (or ``force``); return whether it re-read. Unchanged files (same size,
        mtime and inode) keep their parsed result unless ``force``."""
        with self._lock:
            candidates = self._candidates()
            signature = tuple((str(c.path), _stat_key(c.stat), c.problem) for c in candidates)
            if not force and signature == self._signature:
                return False
            parsed: dict[Path, tuple[Any, EmbeddingFile | SkippedEmbedding | None]] = {}
            files: list[EmbeddingFile] = []
            problems: list[SkippedEmbedding] = []
            for c in candidates:
                key = (_stat_key(c.stat), c.problem)
                previous = self._parsed.get(c.path)
                if previous is not None and previous[0] == key and not force:
                    result = previous[1]
                else:
                    result = self._read(c)
                    if isinstance(result, SkippedEmbedding):
                        log.warning("skipping embedding %s", result.reason)  # once per version of the file
                parsed[c.path] = (key, result)
                if isinstance(result, EmbeddingFile):
                    files.append(result)
                elif isinstance(result, SkippedEmbedding):
                    problems.append(result)
            self._signature, self._parsed, self.files, self.problems = signature, parsed, files, problems
            self.generation += 1
            return True

    def refresh(self, model: Any = None) -> EmbeddingSet | None:
        """``POST /sdapi/v1/refresh-embeddings``: re-read every file; refit to ``model`` (or the last model)."""
        with self._lock:
            self.scan(force=True)
            if model is not None:
                return self.load_for(model)
            if self.current is not None:
                self.current = self._fit(self.current.widths, self._last_family)
            return self.current

    # -- fitting --------------------------------------------------------------------------------------------------

    def load_for(self, model: Any, force: bool = False) -> EmbeddingSet:
        """The embeddings that fit ``model`` (a LoadedModel), re-scanning first if the folders changed.

        Cheap when nothing changed (a stat per file): call it before each generation, as A1111 does.
        """
        with self._lock:
            self.scan(force=force)
            widths = expected_widths(model)
            current = self.current
            family = _family(model)
            if current is not None and current.generation == self.generation and current.widths == widths \
                    and self._last_family == family:
                return current
            self._last_family = family
            self.current = self._fit(widths, family)
            return self.current

    def _fit(self, widths: dict[str, int], family: str) -> EmbeddingSet:
        loaded: dict[str, Embedding] = {}
        skipped_files: list[SkippedEmbedding] = []
        for f in self.files:
            result = fit(f, widths, family)
            if isinstance(result, str):
                skipped_files.append(_skipped_from(f, KIND_INCOMPATIBLE, f"{f.path.name}: {result}"))
                continue
            if f.name in loaded:
                first = loaded[f.name]
                skipped_files.append(_skipped_from(
                    f, KIND_DUPLICATE, f"{f.path.name}: another embedding named {f.name!r} is used ({first.path})"))
                continue
            loaded[f.name] = Embedding(
                name=f.name, path=f.path, vectors=result, vector_count=f.vector_count, shape=f.shape, step=f.step,
                sd_checkpoint=f.sd_checkpoint, sd_checkpoint_name=f.sd_checkpoint_name, sha256=f.sha256,
                format=f.format,
            )
        skipped_files.extend(self.problems)
        skipped: dict[str, SkippedEmbedding] = {}
        for s in skipped_files:
            skipped.setdefault(s.name, s)
        ordered = {name: loaded[name] for name in sorted(loaded, key=str.lower)}
        if ordered:
            log.info("Textual inversion embeddings loaded(%d): %s", len(ordered), ", ".join(ordered))
        if skipped:
            log.info("Textual inversion embeddings skipped(%d): %s", len(skipped), ", ".join(skipped))
        return EmbeddingSet(widths, ordered, skipped, skipped_files, self.generation)

    def api_dict(self, with_reasons: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
        """The last ``load_for`` set's API dict; empty lists before any model was loaded."""
        with self._lock:
            if self.current is None:
                return {"loaded": {}, "skipped": {}}
            return self.current.api_dict(with_reasons)


__all__ = [
    "EMBEDDING_EXTENSIONS",
    "Embedding",
    "EmbeddingDatabase",
    "EmbeddingFile",
    "EmbeddingSet",
    "NotAnEmbedding",
    "SkippedEmbedding",
    "expected_widths",
    "fit",
    "parse_embedding_data",
    "read_embedding_file",
    "ti_hashes",
]
