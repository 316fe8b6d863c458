"""Face restorers (GFPGAN, CodeFormer): what A1111 lists, where their weights go, and whether they can run.

Restoring a face needs the restorer's weights *and* a face detector with alignment (A1111 uses facexlib with its
RetinaFace weights). Neither ships in any package registry, and facexlib needs torchvision, which does not work on
this project's machines; so restoration reports itself unavailable with the reason, and a request that asks for it
gets that message instead of a crash or a silently unrestored image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modules.errors import FieldError

WEIGHT_SUFFIXES = (".pth", ".safetensors", ".ckpt")


@dataclass(frozen=True)
class FaceRestorer:
    name: str
    folder: Path
    field: str  # the request field that asks for it

    def weights(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES)

    def reason_parts(self) -> tuple[str, Path | None]:
        """(the fixed phrase, the folder it names): the UI shows the phrase translated and the path as is."""
        if not self.weights():
            return f"{self.name} weights are not installed: put them in", self.folder
        return (f"{self.name} weights were found, but face detection and alignment (facexlib) are not available "
                "in this version, so faces cannot be restored yet", None)

    def unavailable_reason(self) -> str:
        phrase, folder = self.reason_parts()
        return f"{phrase} {folder}" if folder is not None else phrase


class FaceRestorers:
    """The restorers A1111 lists, in its order (CodeFormer first)."""

    def __init__(self, gfpgan_dir: Path, codeformer_dir: Path) -> None:
        self.items = [FaceRestorer("CodeFormer", codeformer_dir, "codeformer_visibility"),
                      FaceRestorer("GFPGAN", gfpgan_dir, "gfpgan_visibility")]

    @classmethod
    def from_paths(cls, paths: Any) -> FaceRestorers:
        # --gfpgan-models-path / --codeformer-models-path replace the folder, as in A1111
        return cls(paths.model_dirs("gfpgan")[-1], paths.model_dirs("codeformer")[-1])

    def api_list(self) -> list[dict[str, str]]:
        return [{"name": r.name, "cmd_dir": str(r.folder)} for r in self.items]

    def status(self) -> dict[str, tuple[str, Path | None]]:
        """Name -> why it cannot run (shown next to its controls), as ``reason_parts``."""
        return {r.name: r.reason_parts() for r in self.items}

    def restore(self, image: Any, params: Any, info: dict[str, Any]) -> Any:
        """Faces restored with the requested visibilities; a restorer that is asked for but cannot run is an
        error naming its field."""
        for restorer in self.items:
            if getattr(params, restorer.field, 0) > 0:
                raise FieldError(restorer.field, restorer.unavailable_reason())
        return image
