"""A1111's ``modules.safe`` for extensions: ``load`` (A1111's checked ``torch.load``), ``unsafe_torch_load``,
``load_with_extra`` and ``Extra``.

Every pickle here goes through torch's weights-only unpickler (``modules.models.formats``), which never runs code
from the file; safetensors files are read by their bytes. This holds for all four names:

* ``load(filename, ...)`` returns what the file holds (tensors, dicts, lists, numbers: an embedding's
  ``string_to_param`` dict as well as a state dict), or raises ``UnsafeFileError`` naming the refused global.
* ``unsafe_torch_load`` is A1111's name for the *unchecked* ``torch.load`` that extensions swap in to read
  pickles of their own classes (detector models, optimizer states). Here it is refused the same way: it is
  ``torch.load`` with ``weights_only=True`` forced, so such a pickle raises ``UnsafeFileError`` instead of running
  the code it carries. Convert those files to safetensors, or to plain tensors, to use them.
* ``load_with_extra(filename, extra_handler)`` and ``with Extra(handler):`` cannot widen what is allowed: the
  handler is never consulted.

A1111's ``RestrictedUnpickler`` and ``TypedStorage`` internals raise AttributeError. No torch at import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable


def __getattr__(name: str) -> Any:
    if name in ("RestrictedUnpickler", "TypedStorage", "check_pt", "encode", "allowed_zip_names_re", "data_pkl_re"):
        raise AttributeError(f"modules.safe.{name} is A1111's own unpickler; this app loads pickles only through "
                             "torch's weights-only unpickler (modules.models.formats)")
    raise AttributeError(f"module 'modules.safe' has no attribute {name!r}")


def _device(map_location: Any) -> str:
    if map_location is None or callable(map_location) or isinstance(map_location, dict):
        return "cpu"
    return str(map_location)


def load(filename: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Any:
    """The contents of a weights file, never running code from it (see the module doc). ``map_location`` (a
    device name or ``torch.device``) is honoured; anything else loads to the CPU."""
    from modules.models import formats

    path = Path(filename)
    device = _device(kwargs.get("map_location", args[0] if args else None))
    fmt = formats.sniff_format(path)
    if fmt == "safetensors":
        return formats.load_state_dict(path, device)
    if fmt in ("zip-pickle", "legacy-pickle"):
        return formats._load_pickle(path, fmt, device)
    return formats.load_state_dict(path, device)  # raises CorruptFileError naming what the file is


def load_with_extra(filename: str | os.PathLike[str], extra_handler: Callable[..., Any] | None = None,
                    *args: Any, **kwargs: Any) -> Any:
    """``load``; ``extra_handler`` (A1111: allow more globals) is not consulted."""
    return load(filename, *args, **kwargs)


def unsafe_torch_load(f: Any, *args: Any, **kwargs: Any) -> Any:
    """``torch.load`` with ``weights_only=True`` forced (see the module doc): a file path goes through ``load``,
    so a hostile pickle is an ``UnsafeFileError``; an open file goes to torch's weights-only unpickler directly."""
    if isinstance(f, (str, os.PathLike)):
        return load(f, *args, **kwargs)
    import torch

    kwargs["weights_only"] = True
    return torch.load(f, *args, **kwargs)


class Extra:
    """A1111: ``with safe.Extra(handler):`` allows more globals while loading. Accepted; nothing more is allowed."""

    def __init__(self, handler: Callable[..., Any]) -> None:
        self.handler = handler

    def __enter__(self) -> Extra:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


global_extra_handler: Callable[..., Any] | None = None
