"""What the Extra Networks panel and its routes do with the pages of ``modules.ui_extra_networks``: the pages in
A1111's tab order, a page's pane or one card, the allowed folders, and the two writes (an item's ``name.json``, its
preview image), each only for a file inside that page's own model folders. No gradio, no web framework.
"""

from __future__ import annotations

from typing import Any, Mapping

from modules import extra_networks_files as files
from modules import extra_networks_html as render
from modules import ui_extra_networks

HYPERNETWORKS_NOTE = ("Hypernetworks are not supported: the files below were found, but a <hypernet:...> tag does "
                      "nothing here.")
_hypernetworks = ui_extra_networks.ExtraNetworksPageHypernetworks()


def panel_pages(tab_order: str = "") -> list[Any]:
    """The registered pages plus Hypernetworks (after Textual Inversion, where A1111 has it), in the order the
    ``ui_extra_networks_tab_reorder`` setting asks for (A1111's ``pages_in_preferred_order``)."""
    pages = list(ui_extra_networks.extra_pages)
    at = next((i + 1 for i, p in enumerate(pages) if p.name == "textual inversion"), 0)
    pages.insert(at, _hypernetworks)
    wanted = [x.lower().strip() for x in (tab_order or "").split(",") if x.strip()]

    def score(index_page: tuple[int, Any]) -> tuple[int, int]:
        index, page = index_page
        return next((i for i, w in enumerate(wanted) if w in page.name.lower()), len(pages)), index

    return [p for _, p in sorted(enumerate(pages), key=score)]


def find_page(name: str) -> Any | None:
    """A page by A1111's ``page.name`` ("lora", "textual inversion") or its tab id ("textual_inversion")."""
    key = (name or "").strip().lower()
    return next((p for p in panel_pages() if key in (p.name.lower(), render.page_id(p).lower())), None)


def allowed_dirs() -> list[str]:
    """Every page's preview folders: A1111's ``allowed_dirs`` (the thumb route serves only below these)."""
    out: list[str] = []
    for page in panel_pages():
        out += [str(d) for d in page.allowed_directories_for_previews() if d]
    return list(dict.fromkeys(out))


def _checkpoint_titles(page: Any) -> dict[str, str] | None:
    if not isinstance(page, ui_extra_networks.ExtraNetworksPageCheckpoints):
        return None
    from modules import sd_models

    titles: dict[str, str] = {}
    for checkpoint in list(sd_models.checkpoints_list.values()):
        titles.setdefault(checkpoint.name_for_extra, checkpoint.title)
    return titles


def pane(page: Any, tabname: str, opts: Mapping[str, Any]) -> str:
    if page is _hypernetworks:
        return render.pane_html(page, tabname, opts, note=HYPERNETWORKS_NOTE, action="none")
    return render.pane_html(page, tabname, opts, checkpoint_titles=_checkpoint_titles(page))


def find_item(page: Any, name: str) -> dict[str, Any] | None:
    """The item ``name`` as it is on disk now (A1111's get-single-card builds it afresh)."""
    try:
        item = page.create_item(name, enable_filter=False)
    except TypeError:  # an extension's create_item without enable_filter
        item = page.create_item(name)
    except Exception:
        item = None
    if item is None:
        item = (getattr(page, "items", None) or {}).get(name)
    if item is not None:
        page.items[name] = item
        page.read_user_metadata(item)
    return item


def single_card(page: Any, tabname: str, name: str, opts: Mapping[str, Any]) -> str | None:
    item = find_item(page, name)
    if item is None:
        return None
    roots = [str(d) for d in page.allowed_directories_for_previews() if d]
    titles = _checkpoint_titles(page)
    action = "none" if page is _hypernetworks else ("checkpoint" if titles is not None else "prompt")
    return render.card_html(page, item, tabname, opts, roots, action=action,
                            checkpoint_title=(titles or {}).get(name), editable=action != "none")


def user_metadata(page: Any, name: str) -> dict[str, Any] | None:
    """What the edit dialog shows: name.json's keys, with the item's own description and SD version as A1111's
    editor shows them when the file has none."""
    item = find_item(page, name)
    if item is None:
        return None
    data = dict(item.get("user_metadata") or {})
    data.setdefault("description", render.description_of(item))
    data.setdefault("sd version", item.get("sd_version") or "Unknown")
    return {"name": name, "filename": item.get("filename"), "page": page.name, "user_metadata": data,
            "has_preview": bool(item.get("preview")), "is_lora": isinstance(page, ui_extra_networks.ExtraNetworksPageLora)}


def _owned_file(page: Any, item: Mapping[str, Any], key: str) -> str:
    target = item.get(key) or ""
    roots = [str(d) for d in page.allowed_directories_for_previews() if d]
    if not files.inside_model_dirs(target, roots):
        raise PermissionError("this item's files are outside its model folders")
    return target


def save_user_metadata(page: Any, name: str, edit: Mapping[str, Any]) -> dict[str, Any]:
    """Write the edit into the item's name.json. LookupError: no such item; PermissionError: its file is outside
    the page's folders; files.MetadataError: a bad value (nothing written)."""
    item = find_item(page, name)
    if item is None or page is _hypernetworks:
        raise LookupError(name)
    return files.write_user_metadata(_owned_file(page, item, "filename"), edit)


def replace_preview(page: Any, name: str, data: bytes) -> str:
    """Save ``data`` (an image) as the item's preview (A1111's ``local_preview``: ``name.<samples format>`` beside
    it). Returns the preview file's path."""
    item = find_item(page, name)
    if item is None:
        raise LookupError(name)
    target = _owned_file(page, item, "local_preview")
    roots = [str(d) for d in page.allowed_directories_for_previews() if d]
    return str(files.save_preview(target, data, roots))
