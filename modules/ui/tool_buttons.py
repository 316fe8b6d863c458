"""A1111's small emoji tool buttons: their hover hints and icons that render without an emoji font.

The buttons keep A1111's emoji as their text (extensions and users' scripts find them by it, and the hints are
looked up by it as A1111's ``titles`` are). The page draws each as a monochrome icon in the text colour (a CSS
mask over ``currentColor``), so a machine without an emoji font shows the same icons instead of empty boxes.
``TITLES`` are A1111's hints for them, by the button's text; ``CLASS_TITLES`` those of an emoji that means
different things on different buttons (📐 sends to Extras under a gallery and reads the size in img2img; 💾 saves
an image or a style; the styles editor's 🗑️ and 📋), set by a class on the button. Both go through the page's
localization like any hint.
"""

from __future__ import annotations

from urllib.parse import quote

OUTDIR_SAVE = "log/images"  # A1111's default outdir_save, named in the save hints as A1111 names it

TITLES: dict[str, str] = {
    "🎲️": "Set seed to -1, which will cause a new random number to be used every time",
    "♻️": "Reuse seed from last generation, mostly useful if it was randomized",
    "↙️": "Read generation parameters from prompt or last generation if prompt is empty into user interface.",
    "⇅": "Switch width/height",
    "📂": "Open images output directory",
    "🗃️": f"Save zip archive with images to a dedicated directory ({OUTDIR_SAVE})",
    "🖼️": "Send image and generation parameters to img2img tab.",
    "🎨️": "Send image and generation parameters to img2img inpaint tab.",
    "🔄": "Refresh",
    "🖌️": "Edit styles",
}

CLASS_TITLES: dict[str, str] = {
    "sd-tip-save-image": f"Save the image to a dedicated directory ({OUTDIR_SAVE}).",
    "sd-tip-send-extras": "Send image and generation parameters to extras tab.",
    "sd-tip-detect-size": "Auto detect size from img2img",
    "sd-tip-save-style": "Save style",
    "sd-tip-delete-style": "Delete style",
    "sd-tip-copy-style": "Copy main UI prompt to style.",
    "sd-tip-apply-styles": "Apply all selected styles from the style selection dropdown in main UI to the prompt.",
}

# Each icon: SVG shapes on a 24x24 grid, drawn as a mask (what is filled shows the text colour).
_STROKE = 'fill="none" stroke="#000" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"'
_ICONS: dict[str, str] = {
    "refresh": f'<path {_STROKE} d="M20 11a8 8 0 0 0-14.5-4.5L4 8M4 4v4h4M4 13a8 8 0 0 0 14.5 4.5L20 16M20 20v-4h-4"/>',
    "paste": f'<path {_STROKE} d="M18 6 6 18M6 9v9h9"/>',
    "swap": f'<path {_STROKE} d="M8 20V4M4 8l4-4 4 4M16 4v16M12 16l4 4 4-4"/>',
    "dice": f'<rect {_STROKE} x="3.5" y="3.5" width="17" height="17" rx="3"/>'
            '<circle cx="8" cy="8" r="1.6"/><circle cx="16" cy="8" r="1.6"/><circle cx="12" cy="12" r="1.6"/>'
            '<circle cx="8" cy="16" r="1.6"/><circle cx="16" cy="16" r="1.6"/>',
    "recycle": f'<path {_STROKE} d="M19 12a7 7 0 1 1-2.05-4.95M17.5 3v4.5H13"/><circle cx="12" cy="12" r="2"/>',
    "folder": f'<path {_STROKE} d="M3 7a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z"/>',
    "save": f'<path {_STROKE} d="M5 3h11l3 3v13a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zM7 3v5h8V3M7 21v-7h10v7"/>',
    "archive": f'<path {_STROKE} d="M3 4h18v4H3zM5 8v11a1 1 0 0 0 1 1h12a1 1 0 0 0 1-1V8M10 12h4"/>',
    "image": f'<rect {_STROKE} x="3" y="4" width="18" height="16" rx="2"/>'
             f'<path {_STROKE} d="m3 17 5-5 4 4 3-3 6 6"/><circle cx="15.5" cy="8.5" r="1.8"/>',
    "palette": f'<path {_STROKE} d="M12 3a9 9 0 1 0 0 18c1.4 0 2-1 2-2 0-1.5-1.5-2-1.5-3.2 0-1 .8-1.8 1.8-1.8H17a4 4 '
               '0 0 0 4-4c0-4-4-7-9-7z"/><circle cx="7.5" cy="11" r="1.4"/><circle cx="10" cy="7" r="1.4"/>'
               '<circle cx="15" cy="7" r="1.4"/>',
    "ruler": f'<path {_STROKE} d="M4 20V4l16 16zM4 14h2M4 10h2M8 20v-2M12 20v-2M8 16h4v-4"/>',
    "trash": f'<path {_STROKE} d="M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13M10 11v6M14 11v6"/>',
    "brush": f'<path {_STROKE} d="M20 4 11 13M9 14c-2 0-4 1.5-4 4 0 1-.5 2-2 2 2.5 1.5 7 1 7.5-2.5L12 16z"/>',
    "clipboard": f'<path {_STROKE} d="M9 4h6v3H9zM9 5H6a1 1 0 0 0-1 1v14a1 1 0 0 0 1 1h12a1 1 0 0 0 1-1V6a1 1 0 0 0-1-1h-3'
                 'M8 12h8M8 16h6"/>',
    "copy": f'<path {_STROKE} d="M5 3h9l5 5v13H5zM14 3v5h5M8 13h8M8 17h5"/>',
}
ICON_OF_TEXT: dict[str, str] = {
    "🔄": "refresh", "↙️": "paste", "⇅": "swap", "🎲️": "dice", "♻️": "recycle", "📂": "folder", "💾": "save",
    "🗃️": "archive", "🖼️": "image", "🎨️": "palette", "📐": "ruler", "🗑️": "trash", "🖌️": "brush", "📋": "clipboard",
    "📝": "copy",
}


def icon_css() -> str:
    """The rules that draw ``[data-sd-icon=name]`` buttons (set by the page script from the button's text)."""
    rules = ["button[data-sd-icon]{font-size:0 !important;line-height:0}",
             "button[data-sd-icon]::before{content:'';display:inline-block;flex:0 0 auto;width:20px;height:20px;"
             "background-color:currentColor;-webkit-mask:var(--sd-icon) center/contain no-repeat;"
             "mask:var(--sd-icon) center/contain no-repeat}"]
    for name, shapes in _ICONS.items():
        svg = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">{shapes}</svg>'
        rules.append(f'button[data-sd-icon="{name}"]{{--sd-icon:url("data:image/svg+xml,{quote(svg)}")}}')
    return "\n".join(rules)


def page_data() -> dict[str, dict[str, str]]:
    """What the page script needs: the hints and which text is which icon."""
    return {"titles": {**TITLES, **CLASS_TITLES}, "icons": ICON_OF_TEXT}
