"""Where things live: the install tree (code, bundled configs) and the user's data tree.

A1111 contract: ``--data-dir`` moves everything a user owns (config.json, ui-config.json, styles.csv, outputs/,
extensions/, embeddings/, and models/ unless ``--models-dir``); ``--ckpt-dir``/``--vae-dir``/``--lora-dir`` add folders.
Pure module: no torch, no gradio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INSTALL_DIR = Path(__file__).resolve().parent.parent

# A1111's module-level names, for extensions (``modules.paths.script_path`` ...); ``modules.shared.bind`` points
# data_path/models_path at the running app's folders. Our own code uses ``Paths`` objects instead.
script_path = str(INSTALL_DIR)
data_path = str(INSTALL_DIR)
models_path = str(INSTALL_DIR / "models")
extensions_dir = str(INSTALL_DIR / "extensions")
extensions_builtin_dir = str(INSTALL_DIR / "extensions-builtin")

# Model folder kinds, with the sub-folder names A1111 users know (``models/<name>``).
MODEL_FOLDERS: dict[str, str] = {
    "checkpoints": "Stable-diffusion",
    "vae": "VAE",
    "lora": "Lora",
    "hypernetworks": "hypernetworks",
    "esrgan": "ESRGAN",
    "realesrgan": "RealESRGAN",
    "swinir": "SwinIR",
    "dat": "DAT",
    "hat": "HAT",
    "ldsr": "LDSR",
    "scunet": "ScuNET",
    "bsrgan": "BSRGAN",
    "gfpgan": "GFPGAN",
    "codeformer": "Codeformer",
    "vae_approx": "VAE-approx",
    "clip": "CLIP",
    "controlnet": "ControlNet",
    "wd14": "wd14",  # WD14 tagger folders (model.onnx + selected_tags.csv), for img2text
    "deepbooru": "torch_deepdanbooru",  # A1111's: model-resnet_custom_v3.pt
    "blip": "BLIP",  # A1111's: model_base_caption_capfilt_large.pth (Interrogate CLIP)
    "interrogate": "interrogate",  # Interrogate CLIP's category lists (A1111's interrogate/*.txt)
    "embeddings": "embeddings",  # models/embeddings is searched too, besides <data-dir>/embeddings
    "text_encoder": "text_encoder",  # Forge's; ComfyUI's text_encoders and clip are searched too
}

# Folders other tools keep the same kind in, searched after ours (Forge/ComfyUI names for Flux files).
ALSO_SEARCHED: dict[str, tuple[str, ...]] = {
    "checkpoints": ("unet", "diffusion_models"),
    "text_encoder": ("text_encoders", "clip"),
}


def _resolved(p: str | Path | None, base: Path) -> Path | None:
    if p is None or str(p) == "":
        return None
    path = Path(p).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


@dataclass(frozen=True)
class Paths:
    """Every folder and file the application reads or writes, decided once from the flags."""

    data_dir: Path
    models_dir: Path
    extra_dirs: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    explicit_ckpt: Path | None = None
    forced_vae: Path | None = None
    extra_localizations: Path | None = None
    install_dir: Path = INSTALL_DIR

    @classmethod
    def from_args(cls, args: Any) -> "Paths":
        """Build from parsed flags (an argparse Namespace or anything with the same attributes)."""
        cwd = Path.cwd()
        data_dir = _resolved(getattr(args, "data_dir", None), cwd) or INSTALL_DIR
        models_dir = _resolved(getattr(args, "models_dir", None), cwd) or data_dir / "models"
        flag_for_kind = {
            "checkpoints": "ckpt_dir",
            "vae": "vae_dir",
            "lora": "lora_dir",
            "embeddings": "embeddings_dir",
            "controlnet": "controlnet_dir",
            "hypernetworks": "hypernetwork_dir",
            "esrgan": "esrgan_models_path",
            "realesrgan": "realesrgan_models_path",
            "swinir": "swinir_models_path",
            "dat": "dat_models_path",
            "gfpgan": "gfpgan_models_path",
            "codeformer": "codeformer_models_path",
        }
        extra: dict[str, tuple[Path, ...]] = {}
        for kind, attr in flag_for_kind.items():
            p = _resolved(getattr(args, attr, None), cwd)
            if p is not None:
                extra[kind] = (p,)
        return cls(
            data_dir=data_dir,
            models_dir=models_dir,
            extra_dirs=extra,
            explicit_ckpt=_resolved(getattr(args, "ckpt", None), cwd),
            forced_vae=_resolved(getattr(args, "vae_path", None), cwd),
            extra_localizations=_resolved(getattr(args, "localizations_dir", None), cwd),
        )

    def model_dirs(self, kind: str) -> tuple[Path, ...]:
        """Folders scanned for one model kind: the standard folder first, then the ones added by flags."""
        dirs: list[Path] = []
        if kind == "embeddings":
            dirs.append(self.data_dir / "embeddings")
        dirs.append(self.models_dir / MODEL_FOLDERS[kind])
        dirs += [self.models_dir / name for name in ALSO_SEARCHED.get(kind, ())]
        for extra in self.extra_dirs.get(kind, ()):
            if extra not in dirs:
                dirs.append(extra)
        return tuple(dirs)

    def model_dir(self, kind: str) -> Path:
        """The primary folder of a kind (where downloads and conversions go)."""
        return self.models_dir / MODEL_FOLDERS[kind]

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def extensions_dir(self) -> Path:
        return self.data_dir / "extensions"

    @property
    def localizations_dir(self) -> Path:
        return self.install_dir / "localizations"

    def localization_dirs(self) -> list[Path]:
        """Where localization files are found, in merge order: core, --localizations-dir, then each extension's."""
        dirs = [self.localizations_dir]
        if self.extra_localizations is not None:
            dirs.append(self.extra_localizations)
        if self.extensions_dir.is_dir():
            dirs += sorted((d / "localizations" for d in self.extensions_dir.iterdir() if d.is_dir()),
                           key=lambda p: p.parent.name.lower())
        return dirs

    @property
    def config_file(self) -> Path:
        return self.data_dir / "config.json"

    @property
    def ui_config_file(self) -> Path:
        return self.data_dir / "ui-config.json"

    @property
    def styles_file(self) -> Path:
        return self.data_dir / "styles.csv"

    @property
    def cache_file(self) -> Path:
        """Hash cache (sha256 of model files keyed by name, size and mtime)."""
        return self.data_dir / "cache.json"

    @property
    def params_file(self) -> Path:
        return self.data_dir / "params.txt"

    @property
    def bundled_configs_dir(self) -> Path:
        return self.install_dir / "modules" / "models" / "configs"

    def ensure_data_folders(self) -> None:
        """Create the data folders a user expects to find (idempotent, never touches existing files)."""
        for kind in ("checkpoints", "vae", "lora", "esrgan", "realesrgan", "gfpgan", "codeformer", "hypernetworks",
                     "text_encoder"):
            self.model_dir(kind).mkdir(parents=True, exist_ok=True)
        for d in (self.outputs_dir, self.extensions_dir, self.data_dir / "embeddings"):
            d.mkdir(parents=True, exist_ok=True)
