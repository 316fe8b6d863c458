"""Forge's "VAE / Text Encoder" choice: the additional module files a checkpoint without its own text encoders or
VAE (Flux) is completed from, kept in ``models/text_encoder`` (also ``text_encoders``, ``clip``) and ``models/VAE``.

The setting ``forge_additional_modules`` lists the chosen files (Forge stores full paths; a file name or a path
relative to its folder works too). With nothing chosen, each piece a Flux file may lack is taken from the folders
when exactly one file there holds it (judged by its tensor names and shapes); with several, the error names them so
the user chooses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from modules.models import formats
from modules.models.types import ModelFileError

log = logging.getLogger(__name__)
EXTENSIONS = (".safetensors", ".sft", ".gguf", ".pt", ".pth", ".bin", ".ckpt")
ROLES = ("t5", "clip_l", "vae")


class UnknownModuleError(ModelFileError):
    """A chosen additional module that is not in the module folders."""

    kind = "not-found"
    field = "forge_additional_modules"


@dataclass(frozen=True)
class ModuleFile:
    path: Path
    name: str  # relative to its folder, "/"-separated: what the UI shows


class AdditionalModules:
    def __init__(self, text_encoder_dirs: Sequence[Path], vae_dirs: Sequence[Path]) -> None:
        self.dirs = [*text_encoder_dirs, *vae_dirs]
        self._roles: dict[tuple[Path, float, int], str | None] = {}

    @classmethod
    def from_paths(cls, paths: object) -> "AdditionalModules":
        return cls(paths.model_dirs("text_encoder"), paths.model_dirs("vae"))  # type: ignore[attr-defined]

    def files(self) -> list[ModuleFile]:
        found: dict[Path, ModuleFile] = {}
        for folder in self.dirs:
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() in EXTENSIONS and path.is_file() and path not in found:
                    found[path] = ModuleFile(path, path.relative_to(folder).as_posix())
        return list(found.values())

    def names(self) -> list[str]:
        """The choices the UI offers."""
        return [f.name for f in self.files()]

    def resolve(self, chosen: Sequence[str]) -> list[Path]:
        """The files of ``chosen`` entries (full paths inside the folders, relative names, or file names)."""
        files = self.files()
        out: list[Path] = []
        for entry in chosen:
            entry = str(entry).strip()
            if not entry:
                continue
            text = entry.replace("\\", "/")
            # a full path (Forge's, maybe from another install), a folder-relative name, a file name, a stem
            match = next((f.path for f in files if str(f.path) == entry or text == f.name
                          or text.endswith("/" + f.name) or f.path.stem == text), None)
            if match is None:
                where = ", ".join(str(d) for d in self.dirs[:3]) + ("..." if len(self.dirs) > 3 else "")
                raise UnknownModuleError(entry, f"the chosen additional module is not in the module folders "
                                                f"({where}); choose one of: {', '.join(f.name for f in files) or 'none'}")
            if match not in out:
                out.append(match)
        return out

    def role(self, path: Path) -> str | None:
        """"t5", "clip_l", "vae" (a 16-channel autoencoder, Flux's) or None, from the file's safetensors header."""
        try:
            st = path.stat()
        except OSError:
            return None
        key = (path, st.st_mtime, st.st_size)
        if key not in self._roles:
            self._roles[key] = _role_from_header(path)
        return self._roles[key]

    def automatic(self) -> list[Path]:
        """For each piece, the one file that holds it (none where there are several or none)."""
        by_role: dict[str, list[Path]] = {role: [] for role in ROLES}
        for f in self.files():
            role = self.role(f.path)
            if role in by_role:
                by_role[role].append(f.path)
        picked = [paths[0] for paths in by_role.values() if len(paths) == 1]
        if picked:
            log.info("additional modules chosen automatically: %s", ", ".join(p.name for p in picked))
        return picked

    def for_checkpoint(self, chosen: Sequence[str]) -> list[Path]:
        """What a checkpoint load is given: the chosen files, else the automatic choice."""
        return self.resolve(chosen) if any(str(c).strip() for c in chosen) else self.automatic()


def _role_from_header(path: Path) -> str | None:
    if path.suffix.lower() == ".gguf":  # quantized T5 encoders (names only: their shapes are of byte blocks)
        from modules.models import gguf_files, text_encoders

        names = text_encoders.from_llama_names(dict.fromkeys(gguf_files.tensor_names(path)))  # type: ignore[arg-type]
        return "t5" if text_encoders.t5_prefix(names) is not None else None
    if path.suffix.lower() not in (".safetensors", ".sft"):
        return None  # pickles are not opened just to look
    try:
        header = formats.read_safetensors_header(path)
    except ModelFileError:
        return None
    shapes = {k: tuple(v.get("shape", ())) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    from modules.models.families import flux

    found = flux.part_role(shapes)
    if found is None:
        return None
    role, prefix = found
    if role == "vae" and flux.vae_latent_channels(shapes, prefix) != flux.LATENT_CHANNELS:
        return None  # an SD VAE: not a piece of a Flux model
    return role
