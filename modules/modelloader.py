"""A1111's ``modules.modelloader`` for extensions: ``load_file_from_url`` (annotator and model downloads into the
extension's own folder) and ``load_models`` (the model files of a folder), ``friendly_name``.

A download goes to a temporary file beside the target and is renamed when complete, so an interrupted one never
leaves a truncated model; a file that is there is used as is. File names with a folder part are refused.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterable


def friendly_name(file: str) -> str:
    """The model's name: its file name without folder and extension (A1111)."""
    if file.startswith("http"):
        file = urllib.parse.urlparse(file).path
    return os.path.splitext(os.path.basename(file))[0]


def load_file_from_url(url: str, *, model_dir: str, progress: bool = True, file_name: str | None = None,
                       hash_prefix: str | None = None) -> str:
    """``model_dir/file_name`` (the URL's file name by default), downloaded first when it is not there; with
    ``hash_prefix`` the download's sha256 must start with it."""
    name = file_name or os.path.basename(urllib.parse.urlparse(url).path)
    if not name or os.path.basename(name) != name or name in (".", ".."):
        raise ValueError(f"load_file_from_url: {name!r} is not a plain file name")
    folder = Path(model_dir)
    target = folder / name
    if target.is_file():
        return str(target)
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    if progress:
        print(f'Downloading: "{url}" to {target}', flush=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:  # noqa: S310
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if hash_prefix and not digest.hexdigest().startswith(hash_prefix):
            raise ValueError(f"load_file_from_url: {url} does not have the expected hash {hash_prefix}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return str(target)


def load_models(model_path: str, model_url: str | None = None, command_path: str | None = None,
                ext_filter: Iterable[str] | None = None, download_name: str | None = None,
                ext_blacklist: Iterable[str] | None = None, hash_prefix: str | None = None) -> list[str]:
    """The model files in ``model_path`` (and ``command_path``) with one of the ``ext_filter`` suffixes; when there
    are none and ``model_url`` is given, that file is downloaded (A1111)."""
    suffixes = tuple(s.lower() for s in (ext_filter or ()))
    blocked = tuple(s.lower() for s in (ext_blacklist or ()))
    found: list[str] = []
    for folder in [p for p in (command_path, model_path) if p]:
        if not os.path.isdir(folder):
            continue
        for entry in sorted(Path(folder).rglob("*")):
            name = entry.name.lower()
            wanted = not suffixes or name.endswith(suffixes)
            if entry.is_file() and wanted and not (blocked and name.endswith(blocked)):
                found.append(str(entry))
    if not found and model_url is not None:
        found.append(load_file_from_url(model_url, model_dir=model_path, file_name=download_name,
                                        hash_prefix=hash_prefix))
    return found
