"""The Extra Networks panel's HTML, A1111-like: for one page (Lora, Textual Inversion, Checkpoints, an extension's)
and one tab (txt2img, img2img), a pane with the controls (search, sort, direction, tree view, refresh), the folder
tree and the cards. Built from the page objects of ``modules.ui_extra_networks`` (their ``list_items()`` dicts),
so extensions and the panel see the same items.

A card is A1111's markup (``div.card`` > ``img.preview``, ``.button-row``, ``.actions`` > ``.name``,
``.description``), with what the page script needs in ``data-`` attributes: the prompt as the page's JavaScript
expression (A1111's ``item["prompt"]``: it reads ``opts.extra_networks_default_multiplier``), the folder for the tree
filter, the sort keys, and the search text. Pure module: no gradio, no web framework.
"""

from __future__ import annotations

import html
import json
import os
from typing import Any, Iterable, Mapping

from modules import extra_networks_files as files

SORT_ORDERS = (("default", "Default Sort"), ("date_created", "Date Created"), ("date_modified", "Date Modified"),
               ("name", "Name"))
_ORDER_FIELDS = {"Path": "default", "Name": "name", "Date Created": "date_created",
                 "Date Modified": "date_modified"}  # the setting's values -> sort keys


def page_id(page: Any) -> str:
    return str(getattr(page, "extra_networks_tabname", None) or page.name.replace(" ", "_"))


def _attr(value: Any) -> str:
    return html.escape(str(value), quote=True)


def folder_of(filename: str | None, roots: Iterable[str]) -> str:
    """The file's folder below the model folder it is in, with ``/`` ("" for the top, or when outside)."""
    if not filename:
        return ""
    real = os.path.realpath(filename)
    for root in roots:
        base = os.path.realpath(root)
        if os.path.commonpath([real, base]) == base and real != base:
            rel = os.path.relpath(os.path.dirname(real), base)
            return "" if rel == "." else rel.replace(os.sep, "/")
    return ""


def subfolders(roots: Iterable[str], show_hidden: bool = True) -> list[str]:
    """Every folder below the model folders, relative, sorted (A1111's directory buttons / tree)."""
    found: set[str] = set()
    for root in roots:
        if not root or not os.path.isdir(root):
            continue
        for current, dirs, _files in os.walk(root, followlinks=True):
            if not show_hidden:
                dirs[:] = [d for d in dirs if not d.startswith(".")]
            dirs.sort()
            rel = os.path.relpath(current, root)
            if rel != ".":
                found.add(rel.replace(os.sep, "/"))
    return sorted(found, key=str.lower)


def tree_html(folders: list[str]) -> str:
    """Nested lists of folder rows; a row's ``data-path`` is the folder ("" for all)."""
    rows = ["<li><span class='tree-dir tree-all selected' data-path=''>all</span></li>"]
    for folder in folders:
        depth = folder.count("/")
        name = folder.rsplit("/", 1)[-1]
        rows.append(f"<li style='padding-left:{depth * 14}px'><span class='tree-dir' data-path='{_attr(folder)}' "
                    f"title='{_attr(folder)}'>▸ {html.escape(name)}</span></li>")
    return "<ul class='extra-network-tree-list'>" + "".join(rows) + "</ul>"


def description_of(item: Mapping[str, Any]) -> str:
    """A1111's order (the user's ``description`` in name.json, then ``name.txt``), then ours for files A1111
    users have: ``name.civitai.info``, then the safetensors header's ``modelspec.description``."""
    user = item.get("user_metadata") or {}
    for text in (user.get("description"), item.get("description")):
        if isinstance(text, str) and text.strip():
            return text
    return (files.civitai_description(item.get("filename") or "") if item.get("filename") else None) \
        or files.metadata_description(item.get("metadata")) or ""


def card_html(page: Any, item: Mapping[str, Any], tabname: str, opts: Mapping[str, Any], roots: list[str],
              *, action: str = "prompt", checkpoint_title: str | None = None, editable: bool = True) -> str:
    """One card. ``action``: ``prompt`` (add/remove the item's prompt text), ``checkpoint`` (switch to
    ``checkpoint_title``) or ``none`` (a file this app lists but cannot use)."""
    name = str(item.get("name", ""))
    preview = item.get("preview")
    width, height = int(opts.get("extra_networks_card_width") or 0), int(opts.get("extra_networks_card_height") or 0)
    style = (f"height:{height}px;" if height else "") + (f"width:{width}px;" if width else "")
    scale = float(opts.get("extra_networks_card_text_scale", 1.0) or 1.0)
    style += f"font-size:{scale * 100:.0f}%;"
    terms = item.get("search_terms") or ([item["search_term"]] if item.get("search_term") else [])
    folder = folder_of(item.get("filename"), roots)
    search = " ".join([name, folder, *[str(t) for t in terms]]).lower()
    sort_keys = item.get("sort_keys") or {}
    data = {
        "data-name": name, "data-page": page_id(page), "data-tabname": tabname, "data-path": folder,
        "data-search": search, "data-action": action,
        "data-prompt": item.get("prompt") or "", "data-neg-prompt": item.get("negative_prompt") or "",
        "data-allow-neg": "true" if getattr(page, "allow_negative_prompt", False) else "false",
    }
    if checkpoint_title:
        data["data-checkpoint"] = checkpoint_title
    for key, value in sort_keys.items():
        data[f"data-sort-{key}"] = value if value is not None else ""
    attrs = " ".join(f"{k}='{_attr(v)}'" for k, v in data.items())
    image = (f"<img class='preview' src='{_attr(preview)}' loading='lazy' alt=''>" if preview else
             "<div class='preview no-preview'></div>")
    buttons = []
    if item.get("metadata"):
        buttons.append("<div class='metadata-button card-button' title='Show internal metadata'>ⓘ</div>")
    if editable:
        buttons.append("<div class='edit-button card-button' title='Edit metadata'>✎</div>")
    description = description_of(item) if opts.get("extra_networks_card_show_desc", True) else ""
    if description and not opts.get("extra_networks_card_description_is_html", False):
        description = html.escape(description)
    classes = "card" + (" not-supported" if action == "none" else "")
    return (f"<div class='{classes}' style='{_attr(style)}' {attrs}>{image}"
            f"<div class='button-row'>{''.join(buttons)}</div>"
            f"<div class='actions'><div class='additional'><span class='search_terms' style='display:none'>"
            f"{html.escape(' '.join(str(t) for t in terms))}</span></div>"
            f"<span class='name'>{html.escape(name)}</span>"
            f"<span class='description'>{description}</span></div></div>")


def controls_html(tabname: str, pid: str, opts: Mapping[str, Any]) -> str:
    order = _ORDER_FIELDS.get(str(opts.get("extra_networks_card_order_field", "Path")), "default")
    options = "".join(f"<option value='{key}'{' selected' if key == order else ''}>{label}</option>"
                      for key, label in SORT_ORDERS)
    direction = "Descending" if opts.get("extra_networks_card_order") == "Descending" else "Ascending"
    arrow = "▼" if direction == "Descending" else "▲"
    prefix = f"{tabname}_{pid}"
    return (f"<div class='extra-network-control' id='{prefix}_controls'>"
            f"<input type='search' class='extra-network-control--search-text' id='{prefix}_extra_search' "
            f"placeholder='Search' aria-label='Search'>"
            f"<select class='extra-network-control--sort' id='{prefix}_extra_sort' title='Sort order' "
            f"aria-label='Sort order'>{options}</select>"
            f"<button type='button' class='extra-network-control--sort-dir' id='{prefix}_extra_sortorder' "
            f"data-sortdir='{direction}' title='Sort direction: {direction}'>{arrow}</button>"
            f"<button type='button' class='extra-network-control--tree-view' id='{prefix}_extra_tree_view' "
            f"title='Show or hide the folder tree' data-sd-icon='folder'></button>"
            f"<button type='button' class='extra-network-control--refresh' id='{prefix}_extra_refresh' "
            f"title='Refresh the list'>🔄</button></div>")


def pane_html(page: Any, tabname: str, opts: Mapping[str, Any], *, note: str = "",
              checkpoint_titles: Mapping[str, str] | None = None, action: str | None = None) -> str:
    """The whole pane of ``page`` for ``tabname``. Fills ``page.items`` and ``page.metadata`` as A1111's
    ``create_html`` does (the metadata route and get-single-card read them)."""
    pid = page_id(page)
    roots = [str(d) for d in page.allowed_directories_for_previews() if d]
    cards = []
    page.items = {}
    page.metadata = {}
    for item in page.list_items():
        name = item.get("name")
        page.items[name] = item
        if item.get("metadata"):
            page.metadata[name] = item["metadata"]
        card_action = action or ("checkpoint" if checkpoint_titles is not None else "prompt")
        title = (checkpoint_titles or {}).get(name) if checkpoint_titles is not None else None
        cards.append(card_html(page, item, tabname, opts, roots, action=card_action, checkpoint_title=title,
                               editable=card_action != "none"))
    if not cards:
        folders = "".join(f"<li>{html.escape(d)}</li>" for d in roots)
        cards.append(f"<div class='nocards'><h1>Nothing here. Add some content to the following directories:</h1>"
                     f"<ul>{folders}</ul></div>")
    folders_list = subfolders(roots, bool(opts.get("extra_networks_show_hidden_directories", True)))
    tree_open = bool(opts.get("extra_networks_tree_view_default_enabled", True)) and bool(folders_list)
    tree_width = int(opts.get("extra_networks_tree_view_default_width", 180) or 180)
    note_html = f"<div class='extra-network-note'>{html.escape(note)}</div>" if note else ""
    return (f"<div class='extra-network-pane{' tree-open' if tree_open else ''}' id='{tabname}_{pid}_pane' "
            f"data-tabname='{_attr(tabname)}' data-page='{_attr(pid)}'>"
            f"{controls_html(tabname, pid, opts)}{note_html}"
            f"<div class='extra-network-pane-content'>"
            f"<div class='extra-network-tree' id='{tabname}_{pid}_tree' style='flex-basis:{tree_width}px'>"
            f"{tree_html(folders_list)}</div>"
            f"<div class='extra-network-cards' id='{tabname}_{pid}_cards'>{''.join(cards)}</div>"
            f"</div></div>")


def metadata_json(metadata: Any) -> str:
    """A1111's metadata route body: the metadata as indented JSON text."""
    return json.dumps(metadata, indent=4, ensure_ascii=False, default=str)
