"""A1111's ``modules.ui_extra_networks`` for extensions: ``extra_pages`` (the registered pages), ``register_page``,
``ExtraNetworksPage`` (the base class: ``list_items``, ``create_item``, ``refresh``, ``read_user_metadata``,
``search_terms_from_path``, ``find_description``, ``get_sort_keys``, ``allowed_directories_for_previews``),
``quote_js``, ``initialize``/``register_default_pages``, and this app's pages as A1111 has them: ``Textual
Inversion``, ``Checkpoints`` and ``Lora``, whose ``list_items()`` give A1111's item dicts (``name``, ``filename``,
``shorthash``, ``search_terms``, ``prompt``, ``metadata``, ``sort_keys``, ...) for the files this app lists.

Extensions read these pages (prompt-all-in-one lists the LoRAs and embeddings it offers from them), and the
Extra Networks card panel under the prompt is built from them (``modules.extra_networks_pages``), an extension's
page included. An item's ``preview`` is A1111's thumb link (``./sd_extra_networks/thumb?filename=...&mtime=...``).
No gradio, no torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

extra_pages: list[ExtraNetworksPage] = []
allowed_dirs: set[str] = set()
default_allowed_preview_extensions = ["png", "jpg", "jpeg", "webp", "gif"]


def quote_js(s: str) -> str:
    """A string as a JavaScript string literal (A1111 builds ``prompt``/``onclick`` expressions with it)."""
    s = str(s).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def register_page(page: ExtraNetworksPage) -> None:
    """Add an extra networks page (A1111 recommends doing it in an ``on_before_ui`` callback)."""
    extra_pages.append(page)
    allowed_dirs.clear()
    for known in extra_pages:
        allowed_dirs.update(str(d) for d in known.allowed_directories_for_previews())


def initialize() -> None:
    extra_pages.clear()
    allowed_dirs.clear()


def register_default_pages() -> None:
    """This app's pages, in A1111's order (Textual Inversion, Checkpoints; Lora is A1111's built-in extension's).
    A1111 has a Hypernetworks page too; hypernetworks are not supported here, so it is not registered."""
    register_page(ExtraNetworksPageTextualInversion())
    register_page(ExtraNetworksPageCheckpoints())
    register_page(ExtraNetworksPageLora())


def get_user_metadata(filename: str | None) -> dict[str, Any]:
    """The user metadata A1111 keeps beside a network file (``<name>.json``: description, activation text,
    preferred weight, ...); {} when there is none or it is unreadable."""
    if not filename:
        return {}
    path = os.path.splitext(filename)[0] + ".json"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class ExtraNetworksPage:
    """A1111's base class for one page of extra networks: a subclass lists its items (dicts) in ``list_items``."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.name = title.lower()
        self.extra_networks_tabname = self.name.replace(" ", "_")
        self.id_page = self.extra_networks_tabname
        self.allow_prompt = True
        self.allow_negative_prompt = False
        self.metadata: dict[str, Any] = {}
        self.items: dict[str, Any] = {}

    def refresh(self) -> None:
        pass

    def create_item(self, name: str, index: int | None = None, enable_filter: bool = True) -> dict[str, Any] | None:
        raise NotImplementedError()

    def list_items(self) -> Iterator[dict[str, Any]]:
        raise NotImplementedError()

    def allowed_directories_for_previews(self) -> list[str]:
        return []

    def read_user_metadata(self, item: dict[str, Any], use_cache: bool = True) -> None:
        metadata = get_user_metadata(item.get("filename"))
        if metadata.get("description") is not None:
            item["description"] = metadata["description"]
        item["user_metadata"] = metadata

    def search_terms_from_path(self, filename: str, possible_directories: Any = None) -> str:
        abspath = os.path.abspath(filename)
        folders = possible_directories if possible_directories is not None else \
            self.allowed_directories_for_previews()
        for parentdir in folders:
            parentdir = os.path.dirname(os.path.abspath(parentdir))
            if abspath.startswith(parentdir):
                return os.path.relpath(abspath, parentdir)
        return ""

    def get_sort_keys(self, path: str) -> dict[str, Any]:
        try:
            st = os.stat(path)
            mtime, ctime = st.st_mtime, st.st_ctime
        except OSError:
            mtime = ctime = 0
        p = Path(path)
        return {"date_created": int(mtime), "date_modified": int(ctime), "name": p.name.lower(),
                "path": str(p).lower()}

    def find_preview(self, path: str) -> str | None:
        """The thumb link of ``path.<ext>`` or ``path.preview.<ext>`` (png, jpg, jpeg, webp, gif, the samples
        format), as A1111's ``find_preview``; None when there is none."""
        from modules import extra_networks_files

        found = extra_networks_files.find_preview(path, _samples_format())
        return self.link_preview(found) if found else None

    def link_preview(self, filename: str) -> str:
        from modules import extra_networks_files

        return extra_networks_files.thumb_url(filename)

    def find_description(self, path: str) -> str | None:
        """The text of ``<path>.txt`` or ``<path>.description.txt`` beside the file, if any."""
        for file in (f"{path}.txt", f"{path}.description.txt"):
            try:
                with open(file, encoding="utf-8", errors="replace") as f:
                    return f.read()
            except OSError:
                continue
        return None

    def _items(self, names: list[str]) -> Iterator[dict[str, Any]]:
        for index, name in enumerate(names):
            item = self.create_item(name, index)
            if item is not None:
                yield item


def _runtime() -> Any:
    from modules import shared

    return shared.runtime


def _samples_format() -> str:
    from modules import shared

    return (shared.opts.get("samples_format") if shared.opts is not None else None) or "png"


class ExtraNetworksPageCheckpoints(ExtraNetworksPage):
    """The checkpoints of ``models/Stable-diffusion`` (``modules.sd_models.checkpoints_list``)."""

    def __init__(self) -> None:
        super().__init__("Checkpoints")
        self.allow_prompt = False

    def refresh(self) -> None:
        rt = _runtime()
        if rt is not None:
            rt.registry.refresh()

    def create_item(self, name: str, index: int | None = None, enable_filter: bool = True) -> dict[str, Any] | None:
        from modules import sd_models

        checkpoint = sd_models.checkpoint_aliases.get(name)
        if checkpoint is None:
            return None
        path = os.path.splitext(checkpoint.filename)[0]
        terms = [self.search_terms_from_path(checkpoint.filename)] + ([checkpoint.sha256] if checkpoint.sha256 else [])
        return {"name": checkpoint.name_for_extra, "filename": checkpoint.filename,
                "shorthash": checkpoint.shorthash, "preview": self.find_preview(path),
                "description": self.find_description(path), "search_terms": terms,
                "local_preview": f"{path}.{_samples_format()}", "metadata": checkpoint.metadata,
                "sort_keys": {"default": index, **self.get_sort_keys(checkpoint.filename)}}

    def list_items(self) -> Iterator[dict[str, Any]]:
        from modules import sd_models

        return self._items(list(sd_models.checkpoints_list))

    def allowed_directories_for_previews(self) -> list[str]:
        rt = _runtime()
        return [str(d) for d in rt.paths.model_dirs("checkpoints")] if rt is not None else []


class ExtraNetworksPageTextualInversion(ExtraNetworksPage):
    """The embeddings that fit the loaded model (``model_hijack.embedding_db.word_embeddings``; none before the
    first model load, as in A1111)."""

    def __init__(self) -> None:
        super().__init__("Textual Inversion")
        self.allow_negative_prompt = True

    def refresh(self) -> None:
        from modules.sd_hijack import model_hijack

        model_hijack.embedding_db.load_textual_inversion_embeddings(force_reload=True)

    def create_item(self, name: str, index: int | None = None, enable_filter: bool = True,
                    _embeddings: dict[str, Any] | None = None) -> dict[str, Any] | None:
        from modules.sd_hijack import model_hijack

        embedding = (_embeddings if _embeddings is not None else model_hijack.embedding_db.word_embeddings).get(name)
        if embedding is None:
            return None
        path = os.path.splitext(embedding.filename)[0]
        terms = [self.search_terms_from_path(embedding.filename)] + ([embedding.hash] if embedding.hash else [])
        return {"name": name, "filename": embedding.filename, "shorthash": embedding.shorthash,
                "preview": self.find_preview(path), "description": self.find_description(path),
                "search_terms": terms, "prompt": quote_js(embedding.name),
                "local_preview": f"{path}.preview.{_samples_format()}",
                "sort_keys": {"default": index, **self.get_sort_keys(embedding.filename)}}

    def list_items(self) -> Iterator[dict[str, Any]]:
        from modules.sd_hijack import model_hijack

        embeddings = model_hijack.embedding_db.word_embeddings  # read once: each read checks the folders
        for index, name in enumerate(list(embeddings)):
            item = self.create_item(name, index, _embeddings=embeddings)
            if item is not None:
                yield item

    def allowed_directories_for_previews(self) -> list[str]:
        from modules.sd_hijack import model_hijack

        return list(model_hijack.embedding_db.embedding_dirs)


def _weight(value: Any) -> float:
    """A name.json ``preferred weight`` as a number (0: none). The prompt is a JavaScript expression the page
    evaluates, so a weight that is not a number (a hand-made or downloaded file) must never reach it as text."""
    if isinstance(value, bool):
        return 0.0
    try:
        weight = float(value)
    except (TypeError, ValueError):
        return 0.0
    return weight if weight == weight and abs(weight) != float("inf") else 0.0


class ExtraNetworksPageHypernetworks(ExtraNetworksPage):
    """The files of ``models/hypernetworks``, listed so that a user sees they were found; this app does not apply
    hypernetworks, so the page is not registered in ``extra_pages`` and its cards add nothing to the prompt."""

    def __init__(self) -> None:
        super().__init__("Hypernetworks")

    def create_item(self, name: str, index: int | None = None, enable_filter: bool = True) -> dict[str, Any] | None:
        for root in self.allowed_directories_for_previews():
            for path in sorted(Path(root).rglob("*")):
                if path.suffix.lower() in (".pt", ".safetensors") and path.stem == name:
                    stem = os.path.splitext(str(path))[0]
                    return {"name": name, "filename": str(path), "preview": self.find_preview(stem),
                            "description": self.find_description(stem),
                            "search_terms": [self.search_terms_from_path(str(path))],
                            "local_preview": f"{stem}.preview.{_samples_format()}",
                            "sort_keys": {"default": index, **self.get_sort_keys(str(path))}}
        return None

    def list_items(self) -> Iterator[dict[str, Any]]:
        names = []
        for root in self.allowed_directories_for_previews():
            if os.path.isdir(root):
                names += [p.stem for p in sorted(Path(root).rglob("*")) if p.suffix.lower() in (".pt", ".safetensors")]
        return self._items(list(dict.fromkeys(names)))

    def allowed_directories_for_previews(self) -> list[str]:
        rt = _runtime()
        return [str(d) for d in rt.paths.model_dirs("hypernetworks")] if rt is not None else []


class ExtraNetworksPageLora(ExtraNetworksPage):
    """The LoRA files of ``models/Lora`` (and ``--lora-dir``), as ``/sdapi/v1/loras`` lists them; ``prompt`` is
    A1111's JavaScript expression for ``<lora:alias:weight>`` (the user metadata's preferred weight and activation
    text included)."""

    def __init__(self) -> None:
        super().__init__("Lora")

    def _registry(self) -> Any:
        rt = _runtime()
        return getattr(rt, "loras", None) if rt is not None else None

    def refresh(self) -> None:
        registry = self._registry()
        if registry is not None:
            registry.refresh()

    def create_item(self, name: str, index: int | None = None, enable_filter: bool = True) -> dict[str, Any] | None:
        registry = self._registry()
        lora = next((i for i in registry.items() if i.name == name), None) if registry is not None else None
        if lora is None:
            return None
        path = os.path.splitext(lora.filename)[0]
        item = {"name": lora.name, "filename": lora.filename, "shorthash": lora.shorthash,
                "preview": self.find_preview(path), "description": self.find_description(path),
                "search_terms": [self.search_terms_from_path(lora.filename)],
                "local_preview": f"{path}.{_samples_format()}", "metadata": dict(lora.metadata),
                "sort_keys": {"default": index, **self.get_sort_keys(lora.filename)}}
        self.read_user_metadata(item)
        user = item["user_metadata"]
        weight = _weight(user.get("preferred weight"))
        # a JavaScript expression, evaluated by the page (A1111's: the page's opts give the default weight)
        item["prompt"] = (quote_js(f"<lora:{lora.alias}:") + " + "
                          + (str(weight) if weight else "opts['extra_networks_default_multiplier']") + " + "
                          + quote_js(">"))
        if user.get("activation text"):
            item["prompt"] += " + " + quote_js(" " + str(user["activation text"]))
        negative = user.get("negative text")
        item["negative_prompt"] = quote_js(f"({negative}:1)" if negative else "")
        return item

    def list_items(self) -> Iterator[dict[str, Any]]:
        registry = self._registry()
        return self._items([i.name for i in registry.items()] if registry is not None else [])

    def allowed_directories_for_previews(self) -> list[str]:
        rt = _runtime()
        return [str(d) for d in rt.paths.model_dirs("lora")] if rt is not None else []
