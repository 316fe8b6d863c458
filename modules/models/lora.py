"""LoRA networks: find the files, and patch a loaded model with them for one job, restoring it bit for bit after.

A1111 contract 3.5 (``extensions-builtin/Lora``) and 6 (folders). A library: no UI, no HTTP, no global state besides
a guard against patching the same model twice at once.

Files (``LoraRegistry``)
    ``Paths.model_dirs("lora")`` (``models/Lora`` + ``--lora-dir``) are scanned recursively for ``.safetensors``,
    ``.pt`` and ``.ckpt``. A name resolves, in this order, as the relative path without extension (``sub/name``, a
    backslash spelling too), as the file stem (the first file in scan order when several share it), or as the alias
    (``ss_output_name`` from the safetensors metadata, as A1111 reads it) when exactly one file has that alias.
    Names are only ever looked up in that table: a name is never turned into a path, so ``<lora:../../x:1>`` cannot
    reach a file outside the LoRA folders. ``LoraItem.shorthash`` is A1111's Lora hash (12 hex): the
    ``sshs_model_hash`` metadata when present, else the addnet hash (tensor bytes) of a ``.safetensors`` or the
    full-file sha256 of a pickle, through the app's ``HashCache`` under A1111's key ``lora/<stem>``.

Applying (``applied_loras`` / ``apply_loras``)
    Approach: a delta merge, not diffusers+peft. For every targeted ``nn.Linear``/``nn.Conv2d`` the weight becomes
    ``W0 + sum(multiplier * alpha / rank * up @ down)`` (computed in float32 on the weight's device, cast once);
    ``W0`` is copied aside first (to the CPU by default, as A1111 does) and copied back on restore, so the base
    weights are bit-identical afterwards. Subtracting the delta again would not be. diffusers' kohya converter
    (``_convert_non_diffusers_lora_to_diffusers``, a private function) raises on any key it does not rename, so
    one unknown key would reject a whole file, and its peft route either wraps every target module for the job
    (extra matmuls at every step and module swaps) or fuses and unfuses by subtraction.

    Key formats, mapped onto our diffusers/transformers module names (with both naming schemes built from the
    model's own ``named_modules()``, so a name either hits one exact module or is counted as unmatched):

    * kohya / A1111 / LyCORIS LoRA and LoCon: ``lora_unet_<module>``, ``lora_te_<module>`` (SD1/SD2 text encoder),
      ``lora_te1_``/``lora_te2_`` (SDXL CLIP-L / bigG), with ``.lora_down.weight``, ``.lora_up.weight``, optional
      ``.alpha`` and ``.lora_mid.weight`` (LoCon CP/Tucker). UNet module names may be the diffusers ones (kohya on
      SD1/SD2: ``down_blocks_0_attentions_0_...``) or the original LDM/SGM ones (kohya on SDXL:
      ``input_blocks_4_1_transformer_blocks_0_attn1_to_q``, ``input_blocks_1_0_in_layers_2``, ``output_blocks_2_2_conv``).
      Text module names are transformers' (``text_model_encoder_layers_0_self_attn_q_proj``), whatever prefix the
      installed transformers gives ``CLIPTextModel``.
    * diffusers / peft: ``unet.<module>.lora_A.weight``/``lora_B.weight`` (also the older ``.lora.down/.up``,
      ``.lora_linear_layer.down/.up`` and ``.processor.to_q_lora.down`` spellings), ``text_encoder.``,
      ``text_encoder_2.``; an optional ``<module>.alpha``; without alpha the scale is 1.
    * Not supported (reported per file, skipped): LoHa, LoKr, (IA)^3, OFT, GLoRA, full/norm diffs, DoRA, and
      embeddings bundled in a LoRA.

    A 4-channel ``conv_in`` delta on a 9-channel inpainting UNet is zero-padded, like A1111.

Errors never stop the job: an unknown name ("Networks not found: x", A1111's comment), an unreadable, corrupt or
unsafe file (the ``formats`` message), a file whose tensors fit no layer or whose shapes do not fit this model (for
another family) are each reported and the file is left out; keys that match no module are counted per file.

Integration (the lead's txt2img side), per job::

    registry = LoraRegistry.from_paths(paths, hash_cache)              # once; registry.refresh() on demand
    requests = [LoraRequest.from_args(args.positional, args.named)      # one per <lora:...>/<lyco:...> tag
                for args in parsed_tags]
    with applied_loras(model, requests, registry=registry) as report:  # patch UNet + text encoders
        ...encode prompts, sample, decode...                            # (text encoders too: encode INSIDE)
    params.update(report.extra_generation_params())                    # {"Lora hashes": "name: 12hex, ..."}
    comments += report.warnings                                          # "Networks not found: x", errors...

The multipliers are those of A1111: positional ``name, te, unet(=te), dyn``, named ``te=``, ``unet=``, ``dyn=``;
``dyn`` (rank limit) is accepted and ignored.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules import hashing
from modules.models import formats
from modules.models.scan import natural_sort_key, walk_files
from modules.models.types import ModelFileError

if TYPE_CHECKING:
    import torch

    from modules.hashing import HashCache
    from modules.paths import Paths

log = logging.getLogger(__name__)

LORA_EXTENSIONS = (".safetensors", ".pt", ".ckpt")
COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
TEXT_COMPONENTS = ("text_encoder", "text_encoder_2")

_natural_key = natural_sort_key


# ---------------------------------------------------------------------------------------------------------------------
# Files


@dataclass(eq=False)
class LoraItem:
    """One LoRA file. ``name``: the file stem; ``relpath``: path under its folder without extension, with ``/``."""

    name: str
    path: Path  # absolute
    relpath: str
    root: Path
    alias: str  # ss_output_name metadata, else the stem (A1111's ``alias``)
    metadata: dict[str, str]  # safetensors ``__metadata__``; {} for pickles and unreadable headers
    size: int
    mtime: float
    problem: str | None = None  # why the header could not be read (the file is still listed, and fails when used)
    _registry: LoraRegistry | None = field(default=None, repr=False)
    _stat: tuple[str, int, int] | None = field(default=None, repr=False)  # (path, size, mtime_ns) when scanned
    _hash: str | None = field(default=None, repr=False)
    _hash_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def filename(self) -> str:
        return str(self.path)

    @property
    def is_safetensors(self) -> bool:
        # A1111 decides the hash kind by the extension (``network.NetworkOnDisk.is_safetensors``)
        return self.path.suffix.lower() == ".safetensors"

    @property
    def hash_key(self) -> str:
        """A1111's hash-cache key ``lora/<stem>`` (section ``hashes-addnet`` for safetensors, else ``hashes``)."""
        return f"lora/{self.name}"

    @property
    def sha256(self) -> str | None:
        """The full Lora hash (64 hex): metadata ``sshs_model_hash``, else addnet (safetensors) or file sha256.

        Computed on first use and kept; None when hashing is off and nothing is cached, or the file is unreadable.
        """
        with self._hash_lock:
            if self._hash is None:
                self._hash = self._compute_hash()
            return self._hash

    @property
    def shorthash(self) -> str | None:
        """The 12 hex A1111 prints in ``Lora hashes``."""
        full = self.sha256
        return full[:12] if full else None

    def _compute_hash(self) -> str | None:
        from_meta = self.metadata.get("sshs_model_hash", "").strip().lower()
        if len(from_meta) >= 12 and all(c in "0123456789abcdef" for c in from_meta):
            return from_meta
        reg = self._registry
        cache = reg.hash_cache if reg is not None else None
        do_hash = reg.hashing if reg is not None else True
        section = "hashes-addnet" if self.is_safetensors else "hashes"
        try:
            if not do_hash:
                return cache.lookup(self.hash_key, self.path, section) if cache is not None else None
            key = self.hash_key if cache is not None else None
            if self.is_safetensors:
                return hashing.addnet_hash_cached(self.path, cache, key)
            return hashing.sha256_file(self.path, cache, key)
        except (OSError, ValueError) as err:
            log.warning("cannot hash LoRA %s: %s", self.path, err)
            return None

    def api_dict(self) -> dict[str, Any]:
        """A1111's ``/sdapi/v1/loras`` entry."""
        return {"name": self.name, "alias": self.alias, "path": self.filename, "metadata": dict(self.metadata)}


def _is_lora_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in LORA_EXTENSIONS


def _read_metadata(path: Path) -> tuple[dict[str, str], str | None]:
    if path.suffix.lower() != ".safetensors":
        return {}, None
    try:
        header = formats.read_safetensors_header(path)
    except ModelFileError as err:
        return {}, str(err)
    return dict(header.get("__metadata__") or {}), None


class LoraRegistry:
    """The LoRA files of ``dirs`` (priority order) and their names. Thread-safe; ``refresh()`` re-scans.

    ``hash_cache``: the app's HashCache; ``hashing=False`` (``--no-hashing``) only uses hashes already cached.
    """

    def __init__(self, dirs: Iterable[str | Path], hash_cache: HashCache | None = None, *, hashing: bool = True,
                 scan: bool = True) -> None:
        self.dirs = [Path(os.path.abspath(d)) for d in dirs]
        self.hash_cache = hash_cache
        self.hashing = hashing
        self._lock = threading.RLock()
        self._items: list[LoraItem] = []
        self._by_rel: dict[str, LoraItem] = {}
        self._by_stem: dict[str, LoraItem] = {}
        self._by_alias: dict[str, LoraItem] = {}
        self._meta_cache: dict[tuple[str, int, int], tuple[dict[str, str], str | None]] = {}
        self.duplicates: list[tuple[str, Path]] = []  # (stem, shadowed file) from the last refresh
        if scan:
            self.refresh()

    @classmethod
    def from_paths(cls, paths: Paths, hash_cache: HashCache | None = None, *, hashing: bool = True) -> LoraRegistry:
        return cls(paths.model_dirs("lora"), hash_cache, hashing=hashing)

    def refresh(self) -> list[LoraItem]:
        """Re-scan the folders (headers are re-read only for changed files); return the items."""
        found: list[LoraItem] = []
        seen_real: set[str] = set()
        meta_cache: dict[tuple[str, int, int], tuple[dict[str, str], str | None]] = {}
        for root in self.dirs:
            if not root.is_dir():
                continue
            for found_file in walk_files(root, _is_lora_name):
                if found_file.stat is None:  # an empty regular file is listed: using it says why it fails
                    continue
                rel, path, st = found_file.rel, found_file.path, found_file.stat
                real = os.path.realpath(path)
                if real in seen_real:
                    continue
                seen_real.add(real)
                key = (str(path), st.st_size, st.st_mtime_ns)
                meta = self._meta_cache.get(key) or _read_metadata(path)
                meta_cache[key] = meta
                stem = os.path.splitext(path.name)[0]
                item = LoraItem(
                    name=stem,
                    path=path,
                    relpath=os.path.splitext(rel)[0],
                    root=root,
                    alias=meta[0].get("ss_output_name") or stem,
                    metadata=meta[0],
                    size=st.st_size,
                    mtime=st.st_mtime,
                    problem=meta[1],
                    _registry=self,
                    _stat=key,
                )
                found.append(item)
        by_rel: dict[str, LoraItem] = {}
        by_stem: dict[str, LoraItem] = {}
        alias_owners: dict[str, list[LoraItem]] = {}
        duplicates: list[tuple[str, Path]] = []
        for item in found:
            by_rel.setdefault(item.relpath, item)
            if item.name in by_stem:
                duplicates.append((item.name, item.path))
                log.warning("LoRA %s is shadowed by %s (same name)", item.path, by_stem[item.name].path)
            else:
                by_stem[item.name] = item
            alias_owners.setdefault(item.alias, []).append(item)
        # An alias is a name only when one file has it (A1111's forbidden_network_aliases) and no stem is spelled so.
        by_alias = {a: items[0] for a, items in alias_owners.items() if len(items) == 1 and a not in by_stem}
        with self._lock:
            # hashes already computed for files that did not change are kept
            known = {i._stat: i._hash for i in self._items if i._hash is not None}
            for item in found:
                item._hash = known.get(item._stat)
            self._items, self._by_rel, self._by_stem, self._by_alias = found, by_rel, by_stem, by_alias
            self._meta_cache = meta_cache
            self.duplicates = duplicates
        return list(found)

    def items(self) -> list[LoraItem]:
        with self._lock:
            return list(self._items)

    def __iter__(self) -> Iterator[LoraItem]:
        return iter(self.items())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def find(self, name: str) -> LoraItem | None:
        """The file a prompt name means (relative path, stem, then unique alias), or None. Never builds a path."""
        if not name:
            return None
        name = name.strip()
        with self._lock:
            for key in (name, name.replace("\\", "/")):
                item = self._by_rel.get(key) or self._by_stem.get(key) or self._by_alias.get(key)
                if item is not None:
                    return item
        return None

    def api_list(self) -> list[dict[str, Any]]:
        """The ``/sdapi/v1/loras`` payload."""
        return [item.api_dict() for item in self.items()]


# ---------------------------------------------------------------------------------------------------------------------
# Module names: kohya names and diffusers names -> our modules

_RESNET_TO_LDM = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_TOP_TO_LDM = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "class_embedding.linear_1": "label_emb.0.0",
    "class_embedding.linear_2": "label_emb.0.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_RE_UNET_PART = re.compile(
    r"^(?:(down_blocks|up_blocks)\.(\d+)\.|mid_block\.)(resnets|attentions|downsamplers|upsamplers)\.(\d+)(?:\.(.+))?$"
)


def _cfg(config: Any, key: str) -> Any:
    return config[key] if isinstance(config, Mapping) else getattr(config, key)


def ldm_unet_module_name(name: str, config: Any) -> str | None:
    """The original LDM/SGM (``openaimodel.UNetModel``) name of a diffusers ``UNet2DConditionModel`` module.

    E.g. ``down_blocks.1.attentions.0.proj_in`` -> ``input_blocks.4.1.proj_in`` (2 layers per block),
    ``up_blocks.0.upsamplers.0.conv`` -> ``output_blocks.2.1.conv``. None for modules LDM has no name for.
    """
    for prefix, ldm in _TOP_TO_LDM.items():
        if name == prefix or name.startswith(prefix + "."):
            return ldm + name[len(prefix):]
    m = _RE_UNET_PART.match(name)
    if m is None:
        return None
    where, block, kind, index, rest = m.group(1), m.group(2), m.group(3), int(m.group(4)), m.group(5)
    layers = _cfg(config, "layers_per_block")
    if not isinstance(layers, int):
        return None
    if kind == "resnets" and rest is not None:
        leaf, _, tail = rest.partition(".")
        if leaf not in _RESNET_TO_LDM:
            return None
        rest = _RESNET_TO_LDM[leaf] + ("." + tail if tail else "")
    suffix = "." + rest if rest else ""
    if where is None:  # mid block: resnet, transformer, resnet
        if kind == "resnets" and index in (0, 1):
            return f"middle_block.{2 * index}{suffix}"
        if kind == "attentions" and index == 0:
            return f"middle_block.1{suffix}"
        return None
    b = int(block)
    if where == "down_blocks":
        first = 1 + b * (layers + 1)
        if kind == "resnets":
            return f"input_blocks.{first + index}.0{suffix}"
        if kind == "attentions":
            return f"input_blocks.{first + index}.1{suffix}"
        if kind == "downsamplers" and rest is not None and rest.startswith("conv"):
            return f"input_blocks.{first + layers}.0.op{rest[len('conv'):]}"
        return None
    first = b * (layers + 1)
    if kind == "resnets":
        return f"output_blocks.{first + index}.0{suffix}"
    if kind == "attentions":
        return f"output_blocks.{first + index}.1{suffix}"
    if kind == "upsamplers":
        up_types = list(_cfg(config, "up_block_types"))
        slot = 2 if "CrossAttn" in up_types[b] else 1
        return f"output_blocks.{first + layers}.{slot}{suffix}"
    return None


def _canonical_text_name(name: str) -> str:
    """transformers' CLIP module names with the ``text_model.`` prefix older transformers had on CLIPTextModel."""
    if name.startswith("text_model.") or name == "text_model" or name.startswith("text_projection"):
        return name
    return "text_model." + name if name else "text_model"


@dataclass(frozen=True, eq=False)
class Target:
    """A patchable module: where it is (component slot and name inside it) and the module itself."""

    component: str
    module_name: str
    module: Any  # nn.Linear | nn.Conv2d


class TargetIndex:
    """Every Linear/Conv2d of a model under the names LoRA files use for it."""

    def __init__(self, model: Any) -> None:
        import torch

        self.kohya: dict[str, Target] = {}
        self.dotted: dict[tuple[str, str], Target] = {}
        self.ambiguous: set[str] = set()
        from modules.models.stored_weights import StoredLinear

        patchable = (torch.nn.Linear, torch.nn.Conv2d, StoredLinear)
        prefixes: dict[str, tuple[str, ...]] = {"unet": ("lora_unet_",)}
        if getattr(model, "text_encoder", None) is not None:
            prefixes["text_encoder"] = ("lora_te_", "lora_te1_")
        if getattr(model, "text_encoder_2", None) is not None:
            prefixes["text_encoder_2"] = ("lora_te2_",)
        for component, kohya_prefixes in prefixes.items():
            module_root = getattr(model, component)
            config = getattr(module_root, "config", None) if component == "unet" else None
            for name, module in module_root.named_modules():
                if not isinstance(module, patchable):
                    continue
                target = Target(component, name, module)
                if component == "unet":
                    spellings = [name]
                    ldm = ldm_unet_module_name(name, config) if config is not None else None
                    if ldm is not None and ldm != name:
                        spellings.append(ldm)
                    self.dotted[(component, name)] = target
                else:
                    canonical = _canonical_text_name(name)
                    spellings = [canonical]
                    self.dotted[(component, canonical)] = target
                for spelling in spellings:
                    for prefix in kohya_prefixes:
                        self._add(prefix + spelling.replace(".", "_"), target)

    def _add(self, key: str, target: Target) -> None:
        if key in self.ambiguous:
            return
        other = self.kohya.get(key)
        if other is not None and other.module is not target.module:
            self.ambiguous.add(key)
            del self.kohya[key]
            return
        self.kohya[key] = target

    def find_dotted(self, component: str, name: str) -> Target | None:
        if component in TEXT_COMPONENTS:
            name = _canonical_text_name(name)
        return self.dotted.get((component, name))


_INDEX_CACHE: weakref.WeakKeyDictionary[Any, tuple[tuple[int, ...], TargetIndex]] = weakref.WeakKeyDictionary()
_INDEX_LOCK = threading.Lock()


def target_index(model: Any) -> TargetIndex:
    """The (cached) TargetIndex of a LoadedModel."""
    ident = tuple(id(getattr(model, c, None)) for c in COMPONENTS)
    with _INDEX_LOCK:
        cached = _INDEX_CACHE.get(model.unet)
        if cached is not None and cached[0] == ident:
            return cached[1]
    index = TargetIndex(model)
    with _INDEX_LOCK:
        _INDEX_CACHE[model.unet] = (ident, index)
    return index


# ---------------------------------------------------------------------------------------------------------------------
# Parsing a LoRA state dict

_DIFFUSERS_COMPONENTS = {"unet": "unet", "text_encoder": "text_encoder", "text_encoder_2": "text_encoder_2"}
# diffusers/peft spellings of the two factors: suffix -> part
_DOTTED_SUFFIXES = (
    (".lora_A.weight", "lora_down.weight"),
    (".lora_B.weight", "lora_up.weight"),
    (".lora.down.weight", "lora_down.weight"),
    (".lora.up.weight", "lora_up.weight"),
    (".lora_linear_layer.down.weight", "lora_down.weight"),
    (".lora_linear_layer.up.weight", "lora_up.weight"),
    (".lora_magnitude_vector.weight", "dora_scale"),
    (".lora_magnitude_vector", "dora_scale"),
    (".alpha", "alpha"),
)
# kohya layer names with peft factor names (some converters write these)
_KOHYA_PART_ALIASES = {"lora_A.weight": "lora_down.weight", "lora_B.weight": "lora_up.weight"}
_RE_PROCESSOR = re.compile(r"^(.*)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")

# network kinds by the tensor names LyCORIS and friends use; only "lora" is supported
_KIND_BY_PART = (
    ("hada_", "LoHa"),
    ("lokr_", "LoKr"),
    ("oft_", "OFT"),
    ("on_input", "(IA)^3"),
    ("weight", "(IA)^3"),
    ("a1.weight", "GLoRA"),
    ("w_norm", "norm"),
    ("b_norm", "norm"),
    ("diff", "full diff"),
    ("dora_scale", "DoRA"),
)


def _split_key(key: str) -> tuple[Any, str] | None:
    """(group id, part) of one tensor name: group ids are kohya names or ("dotted", component, module)."""
    first, dot, rest = key.partition(".")
    if first.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) and dot:
        return first, _KOHYA_PART_ALIASES.get(rest, rest)
    if first in _DIFFUSERS_COMPONENTS and dot:
        m = _RE_PROCESSOR.match(rest)
        if m is not None:
            module = m.group(1) + "." + ("to_out.0" if m.group(2) == "to_out" else m.group(2))
            return ("dotted", first, module), "lora_down.weight" if m.group(3) == "down" else "lora_up.weight"
        for suffix, part in _DOTTED_SUFFIXES:
            if rest.endswith(suffix):
                return ("dotted", first, rest[: -len(suffix)]), part
    return None


def _network_kind(parts: Mapping[str, Any]) -> str:
    if "lora_down.weight" in parts and "lora_up.weight" in parts:
        return "DoRA" if "dora_scale" in parts else "lora"
    for prefix, kind in _KIND_BY_PART:
        if any(p.startswith(prefix) for p in parts):
            return kind
    return "unknown"


@dataclass
class _Layer:
    """One LoRA layer matched to a module, shapes checked."""

    target: Target
    up: torch.Tensor
    down: torch.Tensor
    mid: torch.Tensor | None
    scale: float  # alpha / rank, or 1
    key: str
    delta_shape: tuple[int, ...]

    def updown(self, device: Any) -> torch.Tensor:
        """up @ down (float32, on ``device``) in the module weight's shape (inpainting conv_in zero-padded)."""
        import torch

        up = self.up.to(device=device, dtype=torch.float32).flatten(1)
        down = self.down.to(device=device, dtype=torch.float32).flatten(1)
        if self.mid is not None:  # LoCon CP/Tucker: (out, r) x (r, r', kh, kw) x (r', in)
            mid = self.mid.to(device=device, dtype=torch.float32)
            ud = torch.einsum("nmkl,in,mj->ijkl", mid, up, down)
        else:
            ud = (up @ down).reshape(self.delta_shape)
        return _fit(ud, weight_shape(self.target.module))


def weight_shape(module: Any) -> tuple[int, ...]:
    """A patchable layer's weight shape (a StoredLinear's weight is kept as stored, not as a tensor of it)."""
    stored = getattr(module, "weight_shape", None)
    return tuple(stored) if stored is not None else tuple(module.weight.shape)


def _delta_shape(up: torch.Tensor, down: torch.Tensor, mid: torch.Tensor | None) -> tuple[int, ...] | None:
    """Shape of up @ down as LoRA/LoCon define it, or None when the factors do not chain."""
    if up.dim() not in (2, 4) or down.dim() not in (2, 4):
        return None
    rank_up = up.shape[1]
    if up.dim() == 4 and tuple(up.shape[2:]) != (1, 1):
        return None
    if mid is not None:
        if mid.dim() != 4 or mid.shape[0] != rank_up or mid.shape[1] != down.shape[0] or down.dim() != 4:
            return None
        return (up.shape[0], down.shape[1], *mid.shape[2:])
    if rank_up != down.shape[0]:
        return None
    return (up.shape[0], *down.shape[1:])


def _fits(delta: tuple[int, ...], weight: tuple[int, ...]) -> bool:
    if delta == weight or math.prod(delta) == math.prod(weight) and delta[0] == weight[0]:
        return True
    # 4-channel LoCon conv_in on a 9-channel inpainting UNet (A1111 pads it)
    return (len(delta) == len(weight) == 4 and delta[0] == weight[0] and delta[2:] == weight[2:]
            and delta[1] == 4 and weight[1] == 9)


def _fit(ud: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    import torch

    if tuple(ud.shape) == shape:
        return ud
    if ud.dim() == 4 and len(shape) == 4 and ud.shape[1] == 4 and shape[1] == 9:
        return torch.nn.functional.pad(ud, (0, 0, 0, 0, 0, 5))
    return ud.reshape(shape)


def _shape_text(t: Any) -> str:
    return "x".join(str(d) for d in t)


@dataclass
class ParsedLora:
    """A LoRA state dict matched against one model. ``error`` set: nothing of it can be applied."""

    layers: list[_Layer]
    unmatched_keys: int
    unmatched_examples: list[str]  # a few layer names, in file order
    unsupported: dict[str, int]  # network kind -> layers skipped
    mismatches: list[str]  # "key: LoRA 320x768, layer 320x2048"
    malformed: list[str]
    error: str | None = None

    @property
    def warnings(self) -> list[str]:
        out: list[str] = []
        if self.unmatched_keys:
            ex = ", ".join(self.unmatched_examples[:3])
            out.append(f"{self.unmatched_keys} keys match no layer of this model and were ignored (e.g. {ex})")
        for kind, n in self.unsupported.items():
            out.append(f"{n} {kind} layers are not supported and were skipped")
        if self.malformed:
            out.append(f"{len(self.malformed)} layers are incomplete or malformed and were skipped "
                       f"(e.g. {self.malformed[0]})")
        return out


def match_lora(state_dict: Mapping[str, torch.Tensor], model: Any) -> ParsedLora:
    """Group a LoRA state dict into layers, find each layer's module in ``model`` and check the shapes.

    Works on models whose weights are on the ``meta`` device (only shapes are read). A Flux model's LoRA, in any of
    the layouts ``families.flux_lora`` reads, is first rewritten to its transformer's module names.
    """
    config = getattr(model, "extra", {}).get("transformer_config") if getattr(model, "is_flux", False) else None
    if config is not None:
        from modules.models.families import flux_lora

        state_dict = flux_lora.to_diffusers(state_dict, config)
    index = target_index(model)
    groups: dict[Any, dict[str, torch.Tensor]] = {}
    group_keys: dict[Any, list[str]] = {}
    unmatched: list[str] = []  # tensor names
    unmatched_layers: dict[str, int] = {}  # layer (or tensor) name -> position in the file, for examples
    for position, (key, tensor) in enumerate(state_dict.items()):
        split = _split_key(key)
        if split is None:
            unmatched.append(key)
            unmatched_layers.setdefault(key, position)
            continue
        gid, part = split
        unmatched_layers.setdefault(gid if isinstance(gid, str) else f"{gid[1]}.{gid[2]}", position)
        groups.setdefault(gid, {})[part] = tensor
        group_keys.setdefault(gid, []).append(key)

    layers: list[_Layer] = []
    unsupported: dict[str, int] = {}
    mismatches: list[str] = []
    malformed: list[str] = []
    missing_labels = {k for k in unmatched}
    for gid, parts in groups.items():
        if isinstance(gid, tuple):
            target = index.find_dotted(gid[1], gid[2])
            label = f"{gid[1]}.{gid[2]}"
        else:
            target = index.kohya.get(gid)
            label = gid
        if target is None:
            unmatched.extend(group_keys[gid])
            missing_labels.add(label)
            continue
        kind = _network_kind(parts)
        if kind == "unknown" and any(p.startswith(("lora_", "alpha")) for p in parts):
            malformed.append(f"{label}: has {', '.join(sorted(parts))} but not both lora_down and lora_up")
            continue
        if kind != "lora":
            unsupported[kind] = unsupported.get(kind, 0) + 1
            continue
        up, down, mid = parts["lora_up.weight"], parts["lora_down.weight"], parts.get("lora_mid.weight")
        alpha_t = parts.get("alpha")
        delta = _delta_shape(up, down, mid)
        if delta is None or (alpha_t is not None and alpha_t.numel() != 1):
            malformed.append(f"{label}: up {_shape_text(up.shape)}, down {_shape_text(down.shape)}")
            continue
        layer_shape = weight_shape(target.module)
        if not _fits(delta, layer_shape):
            mismatches.append(f"{label}: LoRA {_shape_text(delta)}, layer {_shape_text(layer_shape)}")
            continue
        rank = down.shape[0]
        alpha = float(alpha_t.item()) if alpha_t is not None else None
        scale = alpha / rank if alpha is not None and rank else 1.0
        layers.append(_Layer(target, up, down, mid, scale, label, delta))

    examples = sorted(missing_labels, key=lambda n: unmatched_layers.get(n, 0))[:5]
    parsed = ParsedLora(layers, len(unmatched), examples, unsupported, mismatches, malformed)
    total = len(state_dict)
    if mismatches:
        parsed.error = (
            f"its shapes do not fit this model ({len(mismatches)} of {len(layers) + len(mismatches)} layers, "
            f"e.g. {mismatches[0]}); is it made for another model family?"
        )
        parsed.layers = []
    elif not layers:
        if unsupported:
            kinds = ", ".join(sorted(unsupported))
            parsed.error = f"it holds only network types that are not supported ({kinds})"
        elif malformed:
            parsed.error = f"its layers are incomplete or malformed (e.g. {malformed[0]})"
        elif total == 0:
            parsed.error = "it holds no tensors"
        else:
            parsed.error = f"none of its {total} tensors matches a layer of this model (not a LoRA for it?)"
    return parsed


# ---------------------------------------------------------------------------------------------------------------------
# Requests and reports


@dataclass(frozen=True)
class LoraRequest:
    """One ``<lora:name:te:unet>`` tag. ``name`` is as written in the prompt (it is what ``Lora hashes`` prints)."""

    name: str
    te_multiplier: float = 1.0
    unet_multiplier: float | None = None  # None: same as te (A1111)
    dyn_dim: int | None = None  # accepted for A1111 compatibility, not used
    item: LoraItem | None = None  # already resolved (skips the registry lookup)

    @property
    def unet(self) -> float:
        return self.te_multiplier if self.unet_multiplier is None else self.unet_multiplier

    @classmethod
    def from_args(cls, positional: Sequence[str], named: Mapping[str, str] | None = None) -> LoraRequest:
        """A1111's ``extra_networks_lora`` argument rules: ``name, te=1, unet=te, dyn``; ``te=``/``unet=``/``dyn=``.

        Raises ValueError for a missing name or a multiplier that is not a number.
        """
        named = dict(named or {})
        if not positional or not str(positional[0]).strip():
            raise ValueError("a <lora:...> tag needs a name")
        name = str(positional[0]).strip()
        try:
            te = float(positional[1]) if len(positional) > 1 else 1.0
            te = float(named.get("te", te))
            unet = float(positional[2]) if len(positional) > 2 else te
            unet = float(named.get("unet", unet))
            dyn = int(positional[3]) if len(positional) > 3 else None
            dyn = int(named["dyn"]) if "dyn" in named else dyn
        except ValueError as err:
            raise ValueError(f"<lora:{name}:...>: {err}") from None
        return cls(name, te, unet, dyn)


RequestLike = LoraRequest | LoraItem | str | tuple


def _as_request(r: RequestLike) -> LoraRequest:
    if isinstance(r, LoraRequest):
        return r
    if isinstance(r, LoraItem):
        return LoraRequest(r.name, item=r)
    if isinstance(r, str):
        return LoraRequest(r)
    if isinstance(r, tuple) and 1 <= len(r) <= 3:
        first = r[0]
        te = float(r[1]) if len(r) > 1 else 1.0
        unet = float(r[2]) if len(r) > 2 else None
        if isinstance(first, LoraItem):
            return LoraRequest(first.name, te, unet, item=first)
        return LoraRequest(str(first), te, unet)
    raise TypeError(f"not a LoRA request: {r!r}")


@dataclass
class AppliedLora:
    name: str  # as requested
    item: LoraItem
    te_multiplier: float
    unet_multiplier: float
    layers: int  # modules it patched
    unmatched_keys: int

    @property
    def shorthash(self) -> str | None:
        return self.item.shorthash


@dataclass
class LoraReport:
    """What one application did. ``warnings``: user-facing sentences (A1111 shows them as comments)."""

    applied: list[AppliedLora] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # requested name -> why it was left out
    not_found: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    patched_modules: int = 0

    @property
    def lora_hashes(self) -> str | None:
        """A1111's ``Lora hashes`` value: ``"name: 12hex, name2: 12hex"`` (names without ``:`` and ``,``)."""
        parts = []
        for a in self.applied:
            short = a.shorthash
            if short:
                parts.append(f"{a.name.replace(':', '').replace(',', '')}: {short}")
        return ", ".join(parts) if parts else None

    def extra_generation_params(self) -> dict[str, str]:
        value = self.lora_hashes
        return {"Lora hashes": value} if value else {}


# ---------------------------------------------------------------------------------------------------------------------
# Applying

_ACTIVE: weakref.WeakKeyDictionary[Any, LoraPatch] = weakref.WeakKeyDictionary()
_ACTIVE_LOCK = threading.Lock()


def is_patched(module: Any) -> bool:
    """Whether LoRA weights are merged into this component right now (its weights are not the checkpoint's)."""
    with _ACTIVE_LOCK:
        return module in _ACTIVE


class LoraPatch:
    """LoRAs merged into a model's weights; ``restore()`` (idempotent) puts every original tensor back."""

    def __init__(self, model: Any, report: LoraReport) -> None:
        self.model = model
        self.report = report
        self._backups: list[tuple[Any, torch.Tensor]] = []  # (parameter, original copy)
        self._online: list[Any] = []  # StoredLinear layers given deltas to add at each call
        self._components: list[Any] = []
        self.restored = False

    def _claim(self) -> None:
        comps = [getattr(self.model, c, None) for c in COMPONENTS]
        comps = [c for c in comps if c is not None]
        with _ACTIVE_LOCK:
            if any(c in _ACTIVE for c in comps):
                raise RuntimeError("LoRAs are already applied to this model; restore them before applying others")
            for c in comps:
                _ACTIVE[c] = self
        self._components = comps

    def _release(self) -> None:
        with _ACTIVE_LOCK:
            for c in self._components:
                if _ACTIVE.get(c) is self:
                    del _ACTIVE[c]
        self._components = []

    def restore(self) -> None:
        """Copy the original weights back (bit-identical), then release the model."""
        if self.restored:
            return
        import torch

        try:
            with torch.no_grad():
                while self._backups:
                    param, original = self._backups.pop()
                    param.copy_(original)
                while self._online:
                    self._online.pop().lora_deltas = []
        finally:
            self.restored = True
            self._release()

    def _patch(self, contributions: dict[int, tuple[Any, list[tuple[_Layer, float]]]], backup_device: Any) -> None:
        import torch

        # Weights resting in CPU memory (--medvram, --lowvram) are merged on the model's accelerator: the sums are
        # the same, and a CPU would take seconds for a large LoRA where the GPU takes milliseconds.
        execution = getattr(self.model, "device", None)
        with torch.no_grad():
            for module, layers in contributions.values():
                if hasattr(module, "lora_deltas"):  # kept as stored: added at each call, in a merge's arithmetic
                    module.lora_deltas = [(layer, multiplier * layer.scale) for layer, multiplier in layers]
                    self._online.append(module)
                    continue
                weight = module.weight
                if weight.device.type == "meta":
                    continue
                compute = execution if weight.device.type == "cpu" and getattr(execution, "type", "cpu") != "cpu" \
                    else weight.device
                total = None
                for layer, multiplier in layers:
                    ud = layer.updown(compute) * (multiplier * layer.scale)
                    total = ud if total is None else total + ud
                if total is None:
                    continue
                original = weight.detach().to(backup_device or weight.device, copy=True)
                self._backups.append((weight, original))
                weight.copy_((weight.to(compute, torch.float32) + total).to(weight.dtype))


def _load(item: LoraItem) -> dict[str, torch.Tensor]:
    return formats.load_state_dict(item.path, "cpu")


def apply_loras(
    model: Any,
    requests: Sequence[RequestLike],
    *,
    registry: LoraRegistry | None = None,
    backup_device: Any = "cpu",
) -> LoraPatch:
    """Merge the requested LoRAs into ``model`` (a LoadedModel); call ``.restore()`` on the result when done.

    ``requests``: LoraRequest, LoraItem, a name, or ``(name_or_item, te_multiplier[, unet_multiplier])``.
    ``backup_device``: where the original weights wait ("cpu" like A1111; None keeps them on the model's device).
    Never raises for a bad LoRA (see ``LoraPatch.report``); raises RuntimeError if LoRAs are already applied to this
    model, and lets device errors (out of memory) through after restoring what was patched.
    """
    report = LoraReport()
    patch = LoraPatch(model, report)
    reqs = [_as_request(r) for r in requests]
    if not reqs:
        patch.restored = True
        return patch

    refreshed = False
    resolved: list[tuple[LoraRequest, LoraItem]] = []
    for req in reqs:
        item = req.item
        if item is None and registry is not None:
            item = registry.find(req.name)
            if item is None and not refreshed:  # A1111 re-lists the folders once when a name is unknown
                registry.refresh()
                refreshed = True
                item = registry.find(req.name)
        if item is None:
            report.not_found.append(req.name)
            continue
        resolved.append((req, item))
    if report.not_found:
        report.warnings.append("Networks not found: " + ", ".join(report.not_found))

    patch._claim()
    try:
        contributions: dict[int, tuple[Any, list[tuple[_Layer, float]]]] = {}
        loaded: dict[str, ParsedLora | str] = {}
        for req, item in resolved:
            key = str(item.path)
            if key not in loaded:
                try:
                    loaded[key] = match_lora(_load(item), model)
                except ModelFileError as err:
                    loaded[key] = str(err)
                except Exception as err:  # a file we cannot make sense of must not stop the job
                    log.debug("LoRA %s", item.path, exc_info=True)
                    loaded[key] = f"{item.path.name}: cannot read it as a LoRA ({type(err).__name__}: {err})"
            parsed = loaded[key]
            if isinstance(parsed, str):
                report.failed[req.name] = parsed
                report.warnings.append(f"Lora {req.name}: {parsed}")
                continue
            if parsed.error is not None:
                message = f"{item.path.name}: {parsed.error}"
                report.failed[req.name] = message
                report.warnings.append(f"Lora {req.name}: {message}")
                continue
            report.warnings.extend(f"Lora {req.name}: {w}" for w in parsed.warnings)
            used = 0
            for layer in parsed.layers:
                multiplier = req.unet if layer.target.component == "unet" else req.te_multiplier
                if multiplier == 0:
                    continue
                entry = contributions.setdefault(id(layer.target.module), (layer.target.module, []))
                entry[1].append((layer, multiplier))
                used += 1
            report.applied.append(AppliedLora(req.name, item, req.te_multiplier, req.unet, used, parsed.unmatched_keys))
        patch._patch(contributions, backup_device)
        report.patched_modules = len(patch._backups) + len(patch._online)
    except BaseException:
        patch.restore()
        raise
    return patch


@contextmanager
def applied_loras(
    model: Any,
    requests: Sequence[RequestLike],
    *,
    registry: LoraRegistry | None = None,
    backup_device: Any = "cpu",
) -> Iterator[LoraReport]:
    """``with applied_loras(model, requests, registry=reg) as report:`` patch for one job, restore on exit."""
    patch = apply_loras(model, requests, registry=registry, backup_device=backup_device)
    try:
        yield patch.report
    finally:
        patch.restore()


__all__ = [
    "LORA_EXTENSIONS",
    "AppliedLora",
    "LoraItem",
    "LoraPatch",
    "LoraRegistry",
    "LoraReport",
    "LoraRequest",
    "ParsedLora",
    "Target",
    "TargetIndex",
    "apply_loras",
    "applied_loras",
    "ldm_unet_module_name",
    "match_lora",
    "target_index",
]
