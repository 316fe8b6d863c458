"""A1111's model internals that this web UI cannot offer: its bundled ``ldm`` (Stable Diffusion's original code),
``sgm`` (SDXL's), ``k_diffusion``, ``taming``, and the modules that patch or drive them (k-diffusion samplers, the
UNet/CLIP hijacks, the attention optimizations). We run diffusers models; there is no LatentDiffusion object, no
ldm UNetModel, no k-diffusion sampler to hand to an extension.

``install()`` appends an import hook to ``sys.meta_path`` (last, so any real module of that name, ours or an
installed package, still wins). Importing one of these names then raises :class:`MissingA1111Internals`, a
``ModuleNotFoundError`` that says which A1111 module is missing; an extension that guards the import with
``except ImportError`` goes on as it would without them. ``importlib.util.find_spec`` probes (diffusers asks
whether ``k_diffusion`` is installed) still get ``None``: only a real import raises. ``summary(text)`` turns such
an error, anywhere in a traceback, into the one line the Extensions tab shows.
"""

from __future__ import annotations

import re
import sys
from typing import Any

# Top-level packages A1111 ships in repositories/ (or pins) and that only exist for its ldm/sgm models.
PACKAGES = ("ldm", "sgm", "k_diffusion", "taming")
# A1111's own modules that patch or drive those models (modules.<name>, and anything below them).
MODULES = (
    "sd_samplers_kdiffusion", "sd_samplers_compvis", "sd_samplers_timesteps", "sd_samplers_timesteps_impl",
    "sd_samplers_cfg_denoiser", "sd_samplers_extra", "sd_samplers_lcm",
    "sd_hijack_optimizations", "sd_hijack_unet", "sd_hijack_clip", "sd_hijack_clip_old", "sd_hijack_open_clip",
    "sd_hijack_xlmr", "sd_hijack_checkpoint", "sd_hijack_ip2p", "sd_hijack_inpainting", "sd_hijack_utils",
    "sd_unet", "sd_models_xl", "sd_models_config", "sd_models_types", "sd_disable_initialization",
    "sd_vae_approx", "sd_vae_taesd", "sub_quadratic_attention", "xlmr", "xlmr_m18", "lowvram",
    "models.diffusion",
)
NOT_HERE = "needs A1111 internals not in this web UI"
_MARK = "is an A1111 internal this web UI does not have"
_NAMES = frozenset(PACKAGES) | frozenset(f"modules.{m}" for m in MODULES)


class MissingA1111Internals(ModuleNotFoundError):
    """An import of A1111's ldm/k-diffusion internals, which this diffusers-based web UI does not have.
    ``missing`` is the module asked for; ``name`` is too, except for ``from modules import <it>``, where Python
    would swallow a ModuleNotFoundError carrying that name and raise a vaguer "cannot import name"."""

    def __init__(self, name: str, from_list: bool = False) -> None:
        super().__init__(f"{name} {_MARK} (it runs diffusers models, not A1111's ldm/k-diffusion code)",
                         name=None if from_list else name)
        self.missing = name


def missing_name(fullname: str) -> str | None:
    """The A1111 internal that ``fullname`` is (or lies inside), else None."""
    parts = fullname.split(".")
    for end in range(1, len(parts) + 1):
        prefix = ".".join(parts[:end])
        if prefix in _NAMES:
            return prefix
    return None


def _requested(name: str) -> tuple[str, bool]:
    """The full dotted name the import statement asked for (``ldm.modules.diffusionmodules.openaimodel``) when the
    hook is consulted for one of its parents (``ldm``), and whether a ``from X import Y`` asked for it."""
    best, from_list = name, False
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code.co_name
        if code == "_find_and_load_unlocked":
            asked = frame.f_locals.get("name")
            if isinstance(asked, str) and asked.startswith(name + ".") and len(asked) > len(best):
                best = asked
        elif code == "_handle_fromlist":
            from_list = True
            break
        elif not frame.f_code.co_filename.startswith("<frozen"):
            break  # the importing code itself: the import machinery above it is not this import's
        frame = frame.f_back
    return best, from_list


class _Finder:
    """Last on sys.meta_path: consulted only for names no other finder found."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if missing_name(fullname) is None:
            return None
        caller = sys._getframe(1)  # importlib._bootstrap._find_spec
        importing = caller.f_back is not None and caller.f_back.f_code.co_name == "_find_and_load_unlocked"
        if not importing:  # importlib.util.find_spec(...) and friends: "not installed", as before
            return None
        raise MissingA1111Internals(*_requested(fullname))

    def invalidate_caches(self) -> None:
        pass


_FINDER = _Finder()


def install() -> None:
    """Add the hook (once); it stays last so that real modules of these names are always found first."""
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    sys.meta_path.append(_FINDER)


def uninstall() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def summary(text: str) -> str | None:
    """"needs A1111 internals not in this web UI: <module>" when ``text`` (an error message or a traceback)
    reports one of these imports, else None."""
    found = re.search(r"([\w.]+) " + re.escape(_MARK), text or "")
    return f"{NOT_HERE}: {found.group(1)}" if found else None


def summary_of(error: BaseException) -> str | None:
    """The same line for an exception, looking through what it was raised from (``raise X from err``)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MissingA1111Internals):
            return f"{NOT_HERE}: {current.missing}"
        current = current.__cause__ or current.__context__
    return None
