"""VAE choice: the list of VAE files, A1111's resolution order, and swapping a loaded model's VAE weights in place.

* ``VaeRegistry``: ``*.safetensors|*.pt|*.ckpt`` in ``models/VAE`` (+ ``--vae-dir``), recursively, plus
  ``*.vae.safetensors|*.vae.pt|*.vae.ckpt`` anywhere in the checkpoint folders (contract 6). Names are file names
  with their extension (``vae-ft-mse-840000-ema-pruned.safetensors``), what the ``sd_vae`` setting and the
  infotext's ``VAE`` hold. ``GET /sdapi/v1/sd-vae`` is ``api_list()``.
* ``resolve_vae``: A1111's ``sd_vae.resolve_vae`` order (contract 13.4).
* ``VaeSwitcher``: applies a VAE file to a ``LoadedModel`` without reloading the checkpoint, keeping a CPU copy of
  the checkpoint's own VAE weights the first time (restoring is bit-identical), and reports ``VAE``/``VAE hash``.

Pure module at import time (no torch); files are read through ``loader.load_vae`` -> ``formats.load_state_dict``.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules import hashing
from modules.models.scan import natural_sort_key, walk_files
from modules.models.types import CorruptFileError, ModelFileError

if TYPE_CHECKING:
    from modules.hashing import HashCache
    from modules.paths import Paths

log = logging.getLogger(__name__)

VAE_EXTENSIONS = (".safetensors", ".pt", ".ckpt")
NEAR_CHECKPOINT_SUFFIXES = tuple(".vae" + ext for ext in (".ckpt", ".pt", ".safetensors"))  # natural-sort order
AUTOMATIC = "Automatic"
NONE = "None"
MAX_USER_METADATA_BYTES = 1 << 20

# VaeChoice.source values (A1111's wording, printed in its log line "Loading VAE weights <source>: <file>")
SOURCE_COMMANDLINE = "from commandline argument"
SOURCE_SETTINGS = "specified in settings"
SOURCE_USER_METADATA = "from user metadata"
SOURCE_NEAR_CHECKPOINT = "found near the checkpoint"
SOURCE_CHECKPOINT = "the checkpoint's own VAE"  # path None


def _natural_key(text: str) -> list[Any]:
    return natural_sort_key(text)


def is_automatic(setting: str | None) -> bool:
    return setting in (None, "", AUTOMATIC, "auto")  # "auto": old A1111 configs


# ---------------------------------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class VaeFile:
    name: str  # file name with extension
    path: Path  # absolute

    @property
    def filename(self) -> str:
        return str(self.path)

    def api_dict(self) -> dict[str, str]:
        return {"model_name": self.name, "filename": self.filename}


def _regular_file(path: Path) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size > 0


class VaeRegistry:
    """VAE files by name. ``dirs``: ``Paths.model_dirs("vae")``; ``checkpoint_dirs``: ``model_dirs("checkpoints")``.

    Scan order is A1111's (main checkpoint folder's ``*.vae.*``, main VAE folder, then the extra folders of each);
    a name found twice keeps the LAST file, as A1111's dict does (so ``--vae-dir`` overrides ``models/VAE``), with
    a warning. Listing order: names compared naturally and case-insensitively.
    """

    def __init__(self, dirs: Sequence[str | Path], checkpoint_dirs: Sequence[str | Path] = ()) -> None:
        self.dirs = [Path(os.path.abspath(d)) for d in dirs]
        self.checkpoint_dirs = [Path(os.path.abspath(d)) for d in checkpoint_dirs]
        self._lock = threading.Lock()
        self._by_name: dict[str, VaeFile] = {}
        self.skipped: list[tuple[Path, str]] = []
        self.refresh()

    @classmethod
    def from_paths(cls, paths: Paths) -> VaeRegistry:
        return cls(paths.model_dirs("vae"), paths.model_dirs("checkpoints"))

    def _roots(self) -> list[tuple[Path, bool]]:
        """(folder, is_checkpoint_folder) in A1111's order."""
        ck, vae = self.checkpoint_dirs, self.dirs
        order = [(d, True) for d in ck[:1]] + [(d, False) for d in vae[:1]]
        order += [(d, True) for d in ck[1:]] + [(d, False) for d in vae[1:]]
        return order

    def refresh(self) -> list[VaeFile]:
        """Rescan (``POST /sdapi/v1/refresh-vae``)."""
        found: dict[str, VaeFile] = {}
        skipped: list[tuple[Path, str]] = []
        seen_real: set[str] = set()
        for root, is_ckpt in self._roots():
            if not root.is_dir():
                continue
            suffixes = NEAR_CHECKPOINT_SUFFIXES if is_ckpt else VAE_EXTENSIONS
            accept = lambda n, s=suffixes: n.lower().endswith(s)  # noqa: E731
            for path in sorted((f.path for f in walk_files(root, accept)), key=lambda p: _natural_key(str(p))):
                real = os.path.realpath(path)
                if real in seen_real:
                    continue
                seen_real.add(real)
                if not _regular_file(path):
                    skipped.append((path, "not a regular, non-empty file"))
                    continue
                name = path.name
                if name in found and found[name].path != path:
                    log.warning("VAE name %s found twice: using %s, not %s", name, path, found[name].path)
                found[name] = VaeFile(name, path)
        for path, reason in skipped:
            log.warning("skipping VAE %s: %s", path, reason)
        ordered = {n: found[n] for n in sorted(found, key=_natural_key)}
        with self._lock:
            self._by_name = ordered
            self.skipped = skipped
        return list(ordered.values())

    def list(self) -> list[VaeFile]:
        with self._lock:
            return list(self._by_name.values())

    def names(self) -> list[str]:
        with self._lock:
            return list(self._by_name)

    def choices(self) -> list[str]:
        """The ``sd_vae`` dropdown: ``["Automatic", "None", *names]``."""
        return [AUTOMATIC, NONE, *self.names()]

    def get(self, name: str | None) -> VaeFile | None:
        if not name:
            return None
        with self._lock:
            return self._by_name.get(name)

    def api_list(self) -> list[dict[str, str]]:
        """``GET /sdapi/v1/sd-vae``: ``[{model_name, filename}]``."""
        return [v.api_dict() for v in self.list()]

    def near_checkpoint(self, checkpoint_path: str | Path) -> Path | None:
        """``<stem>.vae.{ckpt,pt,safetensors}`` beside the checkpoint, else a listed VAE whose name is the
        checkpoint's stem plus an extension (``models/VAE/<stem>.safetensors``, ``<stem>.vae.pt``).

        A1111 takes the first listed VAE whose name merely *starts with* the stem (so ``model`` would pick
        ``model-v2.vae.pt``); here the stem must end at a dot.
        """
        checkpoint_path = Path(checkpoint_path)
        stem = checkpoint_path.name.rsplit(".", 1)[0]
        for suffix in NEAR_CHECKPOINT_SUFFIXES:
            candidate = checkpoint_path.with_name(stem + suffix)
            if _regular_file(candidate):
                return Path(os.path.abspath(candidate))
        prefix = stem.lower() + "."
        endings = {e[1:] for e in VAE_EXTENSIONS + NEAR_CHECKPOINT_SUFFIXES}  # "safetensors", "vae.pt", ...
        for vae in self.list():
            lower = vae.name.lower()
            if lower.startswith(prefix) and lower[len(prefix):] in endings:
                return vae.path
        return None

    def resolve(self, checkpoint_path: str | Path | None, setting: str | None = AUTOMATIC,
                forced_path: str | Path | None = None, overrides_per_model: bool = True) -> VaeChoice:
        return resolve_vae(checkpoint_path, setting, forced_path, overrides_per_model, self)


# ---------------------------------------------------------------------------------------------------------------------
# Resolution


@dataclass(frozen=True)
class VaeChoice:
    """Which VAE to use: ``path`` None means the checkpoint's own. Unpacks as ``(path, source)``.

    ``warning``: a sentence for the user when a named VAE was not found (the checkpoint's own VAE is used then).
    """

    path: Path | None
    source: str
    warning: str | None = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.path, self.source))

    @property
    def name(self) -> str | None:
        return self.path.name if self.path is not None else None


def read_user_metadata_vae(checkpoint_path: str | Path) -> str | None:
    """The ``vae`` of the checkpoint's user metadata (``<path without extension>.json``, A1111's "Edit metadata")."""
    meta = Path(os.path.splitext(str(checkpoint_path))[0] + ".json")
    try:
        st = os.stat(meta)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_USER_METADATA_BYTES:
            return None
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    vae = data.get("vae") if isinstance(data, dict) else None
    return vae if isinstance(vae, str) and vae else None


def _from_setting(setting: str | None, registry: VaeRegistry | None) -> VaeChoice:
    if setting == NONE:
        return VaeChoice(None, SOURCE_CHECKPOINT)
    if is_automatic(setting):
        return VaeChoice(None, SOURCE_CHECKPOINT)
    found = registry.get(setting) if registry is not None else None
    if found is not None:
        return VaeChoice(found.path, SOURCE_SETTINGS)
    warning = f"VAE {setting!r} not found; using the checkpoint's own VAE"
    log.warning(warning)
    return VaeChoice(None, SOURCE_CHECKPOINT, warning)


def resolve_vae(
    checkpoint_path: str | Path | None,
    setting: str | None = AUTOMATIC,
    forced_path: str | Path | None = None,
    overrides_per_model: bool = True,
    registry: VaeRegistry | None = None,
) -> VaeChoice:
    """A1111's order (contract 13.4):

    1. ``--vae-path`` (``forced_path``), even if the file is not in the registry;
    2. the ``sd_vae`` setting when it is not Automatic and ``sd_vae_overrides_per_model_preferences`` is on
       ("None" -> the checkpoint's own VAE; an unknown name -> the checkpoint's own, with a warning);
    3. the checkpoint's user metadata ``vae`` ("None" -> own VAE; "Automatic" or an unknown name -> go on);
    4. a VAE named like the checkpoint: ``<stem>.vae.*`` beside it, or ``<stem>.<ext>`` in the VAE list;
    5. the setting: a name -> that VAE; "Automatic"/"None" -> the checkpoint's own VAE.
    """
    if forced_path:
        return VaeChoice(Path(os.path.abspath(forced_path)), SOURCE_COMMANDLINE)
    if overrides_per_model and not is_automatic(setting):
        return _from_setting(setting, registry)
    if checkpoint_path is not None:
        meta_vae = read_user_metadata_vae(checkpoint_path)
        if meta_vae is not None and not is_automatic(meta_vae):
            if meta_vae == NONE:
                return VaeChoice(None, SOURCE_USER_METADATA)
            found = registry.get(meta_vae) if registry is not None else None
            if found is not None:
                return VaeChoice(found.path, SOURCE_USER_METADATA)
        near = registry.near_checkpoint(checkpoint_path) if registry is not None else None
        if near is not None and (not overrides_per_model or is_automatic(setting)):
            return VaeChoice(near, SOURCE_NEAR_CHECKPOINT)
    return _from_setting(setting, registry)


# ---------------------------------------------------------------------------------------------------------------------
# Switching the weights of a loaded model


@dataclass(frozen=True)
class _Applied:
    path: Path
    stat_key: tuple[int, int, int]


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class VaeSwitcher:
    """Puts a VAE file's weights into ``model.vae`` in place, and back to the checkpoint's own.

    The first time an external VAE is applied, the current (checkpoint) weights are copied to the CPU; ``restore``
    copies them back bit for bit and frees the copy. A file that cannot be used (missing, damaged, unsafe, another
    architecture) raises a ModelFileError and leaves the VAE exactly as it was: ``loader.load_vae`` checks every
    tensor before the first copy.

    ``hash_cache``/``hashing``: where the ``VAE hash`` comes from (key ``vae/<name>``); with ``hashing=False``
    (``--no-hashing``) only a cached hash is reported. Thread-safe; use one switcher per loaded model
    (``VaeSwitcher.for_model`` keeps it in ``model.extra``).
    """

    EXTRA_KEY = "vae_switcher"

    def __init__(self, model: Any, *, hash_cache: HashCache | None = None, hashing: bool = True) -> None:
        self.model = model
        self.hash_cache = hash_cache
        self.hashing = hashing
        self._lock = threading.RLock()
        self._base: dict[str, Any] | None = None  # CPU copy of the checkpoint's VAE weights, while another is in
        self._applied: _Applied | None = None
        self._sha256: str | None = None

    @classmethod
    def for_model(cls, model: Any, **kwargs: Any) -> VaeSwitcher:
        """The switcher kept with ``model`` (created on first use)."""
        extra = model.extra
        switcher = extra.get(cls.EXTRA_KEY)
        if not isinstance(switcher, cls) or switcher.model is not model:
            switcher = cls(model, **kwargs)
            extra[cls.EXTRA_KEY] = switcher
        else:
            for k, v in kwargs.items():
                setattr(switcher, k, v)
        return switcher

    # -- state ----------------------------------------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        """The applied VAE file, None while the checkpoint's own VAE is in use."""
        applied = self._applied
        return applied.path if applied is not None else None

    @property
    def name(self) -> str | None:
        """Infotext ``VAE``: the file's name with its extension."""
        return self.path.name if self.path is not None else None

    def sha256(self) -> str | None:
        with self._lock:
            if self._applied is None:
                return None
            if self._sha256 is None:
                path, key = self._applied.path, f"vae/{self._applied.path.name}"
                try:
                    if self.hashing:
                        self._sha256 = hashing.sha256_file(path, self.hash_cache, key if self.hash_cache else None)
                    elif self.hash_cache is not None:
                        self._sha256 = self.hash_cache.lookup(key, path)
                except OSError as err:
                    log.warning("cannot hash VAE %s: %s", path, err)
            return self._sha256

    def short_hash(self) -> str | None:
        """Infotext ``VAE hash``: the first 10 hex of the file's sha256."""
        digest = self.sha256()
        return hashing.short_hash(digest) if digest else None

    def infotext(self) -> dict[str, str]:
        """``{"VAE hash": ..., "VAE": ...}`` in A1111's key order; ``{}`` with the checkpoint's own VAE."""
        name = self.name
        if name is None:
            return {}
        out: dict[str, str] = {}
        short = self.short_hash()
        if short:
            out["VAE hash"] = short
        out["VAE"] = name
        return out

    def info(self) -> dict[str, str | None]:
        """``Processed.js`` fields ``sd_vae_name`` / ``sd_vae_hash``."""
        return {"sd_vae_name": self.name, "sd_vae_hash": self.short_hash()}

    # -- switching ------------------------------------------------------------------------------------------------

    def apply(self, path: str | Path) -> bool:
        """Load ``path`` into the model's VAE; False when that file (unchanged) is already applied."""
        from modules.models import loader

        path = Path(os.path.abspath(path))
        with self._lock:
            key = _stat_key(path)
            if self._applied is not None and key is not None and self._applied == _Applied(path, key):
                return False
            vae = self.model.vae
            base = self._base
            if base is None:
                base = {k: v.detach().to("cpu", copy=True) for k, v in vae.state_dict().items()}
            try:
                loader.load_vae(path, vae)
            except ModelFileError:
                raise  # checked before any copy: the VAE is untouched
            except Exception as err:
                # Not from the file's checks (a device error mid-copy?): weights may be mixed; go back to a known state.
                self._copy_in(base)
                self._base, self._applied, self._sha256 = None, None, None
                raise CorruptFileError(path, f"cannot use this VAE ({type(err).__name__}: {err}); "
                                             "the checkpoint's own VAE is in use") from err
            self._base = base
            self._applied = _Applied(path, key or (0, 0, 0))
            self._sha256 = None
            log.info("Loaded VAE weights from %s", path)
            return True

    def restore(self) -> bool:
        """Put the checkpoint's own VAE weights back (bit-identical); False when they are already in use."""
        with self._lock:
            if self._applied is None:
                return False
            if self._base is not None:
                self._copy_in(self._base)
            self._base, self._applied, self._sha256 = None, None, None
            log.info("Restored the checkpoint's own VAE")
            return True

    def _copy_in(self, weights: dict[str, Any]) -> None:
        import torch

        with torch.no_grad():
            self.model.vae.load_state_dict(weights, strict=True)

    def ensure(self, choice: VaeChoice | str | Path | None) -> bool:
        """Make ``choice`` (a VaeChoice, a path, or None for the checkpoint's own) the VAE in use; True if changed."""
        path = choice.path if isinstance(choice, VaeChoice) else choice
        if path is None:
            return self.restore()
        return self.apply(path)

    def select(self, registry: VaeRegistry | None, setting: str | None = AUTOMATIC,
               forced_path: str | Path | None = None, overrides_per_model: bool = True) -> VaeChoice:
        """Resolve for the model's checkpoint and apply: the one call to make after a load or a setting change.

        Cheap when nothing changes (a stat). Raises ModelFileError for an unusable file (the VAE stays as it was).
        """
        choice = resolve_vae(getattr(self.model, "path", None), setting, forced_path, overrides_per_model, registry)
        self.ensure(choice)
        return choice


__all__ = [
    "AUTOMATIC",
    "NONE",
    "SOURCE_CHECKPOINT",
    "SOURCE_COMMANDLINE",
    "SOURCE_NEAR_CHECKPOINT",
    "SOURCE_SETTINGS",
    "SOURCE_USER_METADATA",
    "VAE_EXTENSIONS",
    "VaeChoice",
    "VaeFile",
    "VaeRegistry",
    "VaeSwitcher",
    "is_automatic",
    "read_user_metadata_vae",
    "resolve_vae",
]
