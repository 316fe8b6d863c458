"""Where the weighted preprocessors' files are, and the message when one is missing.

A file is looked for by the name users download it under, in each annotator folder and in that folder's
sd-webui-controlnet subfolder (the extension keeps ``annotator/downloads/<kind>/<file>``: ``hed/ControlNetHED.pth``,
``openpose/body_pose_model.pth``...), so both a flat ``models/ControlNet/annotators/`` and a copied
``downloads`` folder work. Names match in any case (Windows users copy files between file systems).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

ANNOTATOR_FOLDER = "annotators"  # under each ControlNet models folder
EXTENSION_DOWNLOADS = Path("sd-webui-controlnet") / "annotator" / "downloads"  # under extensions/


@dataclass(frozen=True)
class AnnotatorSetup:
    """The annotator folders, searched in order, and the device the annotator networks run on."""

    dirs: tuple[Path, ...] = ()
    device: str = "cpu"


def annotator_setup(controlnet_dirs: Sequence[Path], extensions_dir: Path | None = None,
                    extra_dir: str | Path | None = None, device: str = "cpu") -> AnnotatorSetup:
    """The folders: the setting/flag folder first (the extension's ``control_net_modules_path`` /
    ``--controlnet-annotator-models-path``), then ``annotators/`` of each ControlNet folder, then the extension's
    ``annotator/downloads`` when its folder is there."""
    dirs: list[Path] = [Path(extra_dir)] if extra_dir else []
    dirs += [Path(d) / ANNOTATOR_FOLDER for d in controlnet_dirs]
    if extensions_dir is not None:
        dirs.append(Path(extensions_dir) / EXTENSION_DOWNLOADS)
    return AnnotatorSetup(tuple(dirs), device)


def _match(folder: Path, name: str) -> Path | None:
    if not folder.is_dir():
        return None
    exact = folder / name
    if exact.is_file():
        return exact
    wanted = name.lower()
    return next((f for f in sorted(folder.iterdir()) if f.name.lower() == wanted and f.is_file()), None)


@dataclass(frozen=True)
class WeightFiles:
    """The files one annotator network needs, and the extension's downloads subfolder they sit in."""

    files: tuple[str, ...]
    subdir: str

    def locate(self, dirs: Sequence[Path]) -> list[Path] | None:
        """Every file's path (each found in the first folder that has it), or None when one is missing."""
        found = []
        for name in self.files:
            path = next((p for d in dirs for p in (_match(d, name), _match(d / self.subdir, name)) if p), None)
            if path is None:
                return None
            found.append(path)
        return found

    def absent(self, dirs: Sequence[Path]) -> list[str]:
        """The files not found."""
        return [n for n in self.files if WeightFiles((n,), self.subdir).locate(dirs) is None]


def missing_message(label: str, needed: Sequence[WeightFiles], dirs: Sequence[Path]) -> str | None:
    """Why ``label`` cannot run (None when every file is there): the files, and where to put them."""
    absent = [name for files in needed for name in files.absent(dirs)]
    if not absent:
        return None
    where = str(dirs[0]) if dirs else f"models/ControlNet/{ANNOTATOR_FOLDER}"
    subdirs = sorted({files.subdir for files in needed if files.absent(dirs)})
    them = "it" if len(absent) == 1 else "them"
    return (f"the {label} preprocessor needs {', '.join(absent)}: put {them} in {where} (or in its "
            f"{'/, '.join(subdirs)}/ subfolder, as sd-webui-controlnet's annotator/downloads has {them})")
