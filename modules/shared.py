"""A1111's ``modules.shared`` for extensions: ``opts`` (the settings, with ``add_option``/``onchange``/``data``),
``cmd_opts`` (the parsed flags, with A1111's folder defaults filled in), ``OptionInfo`` with A1111's signature,
``state`` (A1111's ``shared_state.State`` over our job queue), ``prompt_styles`` (our style database, which has
A1111's ``StyleDatabase`` methods), ``total_tqdm``, ``sd_model``, ``device`` and the other module-level names
extensions read.

This module is only a facade for extension code: our own code receives the runtime explicitly and never reads it.
``bind(runtime)`` fills it in when the app is built. Importing it costs nothing: no torch, no gradio.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
import threading
import time
from typing import Any, Callable

from modules import options as _options

opts: Any = None  # modules.options.Options once bound
cmd_opts: Any = None  # a copy of the parsed flags with A1111's folder defaults (see _cmd_opts_view)
runtime: Any = None
prompt_styles: Any = None  # modules.styles.StyleDatabase once bound
demo: Any = None  # A1111's gradio Blocks; the page is built after extensions load, so extensions never see it here
log = logging.getLogger("sd")
hypernetworks: dict[str, str] = {}  # hypernetworks are not supported: none are listed (tag completion offers none)
loaded_hypernetworks: list[Any] = []
weight_load_location: str | None = None
xformers_available = False
parallel_processing_allowed = True
batch_cond_uncond = True
progress_print_out = sys.stdout
restricted_opts: set[str] = set()
settings_components: dict[str, Any] = {}
tab_names: list[str] = []
gradio_theme: Any = None
mem_mon: Any = None
hf_endpoint = os.getenv("HF_ENDPOINT", "https://huggingface.co")
# A1111's folder names, pointed at the app's folders by bind()
script_path = data_path = models_path = extensions_dir = extensions_builtin_dir = ""
config_filename = sd_model_file = default_sd_model_file = ""
styles_filename: list[str] = []


class State:
    """A1111's ``shared.state`` (``modules/shared_state.py``) as a view of the running job's progress.

    While a job runs, the members read its ``JobProgress``: ``job``, ``job_no``, ``job_count``, ``sampling_step``,
    ``sampling_steps``, ``job_timestamp``, ``textinfo``, ``time_start``, ``interrupted``, ``skipped``,
    ``current_latent``, ``current_image`` (the live preview), ``id_live_preview``. Setting ``textinfo`` shows the text
    in the progress bar; setting ``interrupted``/``skipped`` to True interrupts/skips the job (they cannot be set
    back: the request was already acted on; setting ``skipped`` to False consumes a pending skip). Other values an
    extension sets while a job runs (``state.job_count += n``) are kept for that job and read back, but the
    progress bar keeps counting the images it sees. With no job running every member is a plain value, as in
    A1111, so ``begin()``/``nextjob()``/``end()`` around an extension's own work behave as there.
    """

    _OWN = ("job", "job_no", "job_count", "job_timestamp", "sampling_step", "sampling_steps", "textinfo",
            "time_start", "interrupted", "skipped", "stopping_generation", "current_latent", "current_image",
            "current_image_sampling_step", "id_live_preview")

    def __init__(self, jobs: Any = None) -> None:
        self.__dict__["_jobs"] = jobs
        self.__dict__["_lock"] = threading.Lock()
        self.__dict__["_idle"] = self._idle_values()
        self.__dict__["_written"] = (None, {})  # (job id, values set while that job ran)
        self.__dict__["_server_command"] = None
        self.__dict__["_server_command_signal"] = threading.Event()
        self.server_start = time.time()
        self.processing_has_refined_job_count = False

    @staticmethod
    def _idle_values() -> dict[str, Any]:
        return {"job": "", "job_no": 0, "job_count": 0, "job_timestamp": "0", "sampling_step": 0,
                "sampling_steps": 0, "textinfo": None, "time_start": None, "interrupted": False, "skipped": False,
                "stopping_generation": False, "current_latent": None, "current_image": None,
                "current_image_sampling_step": 0, "id_live_preview": 0}

    def _bind(self, jobs: Any) -> None:
        with self._lock:
            self.__dict__["_jobs"] = jobs
            self.__dict__["_idle"] = self._idle_values()
            self.__dict__["_written"] = (None, {})

    def _job(self) -> Any:
        jobs = self.__dict__["_jobs"]
        return jobs.current if jobs is not None else None

    def _written_for(self, job: Any) -> dict[str, Any]:
        with self._lock:
            job_id, values = self.__dict__["_written"]
            if job_id != job.id:
                values = {}
                self.__dict__["_written"] = (job.id, values)
            return values

    def __getattr__(self, name: str) -> Any:
        if name not in State._OWN:
            raise AttributeError(f"'State' object has no attribute {name!r}")
        job = self._job()
        if job is None:
            return self.__dict__["_idle"][name]
        written = self._written_for(job)
        if name in written:
            return written[name]
        return self._from_progress(job, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in State._OWN:
            object.__setattr__(self, name, value)  # properties (server_command, need_restart) keep their setters
            return
        job = self._job()
        if job is None:
            self.__dict__["_idle"][name] = value
            return
        progress = job.progress
        if name == "textinfo":
            progress.set_textinfo("" if value is None else str(value))
        elif name == "interrupted":
            if value:
                progress.interrupt()
        elif name == "skipped":
            progress.skip() if value else progress.take_skip()
        else:
            self._written_for(job)[name] = value

    @staticmethod
    def _from_progress(job: Any, name: str) -> Any:
        progress = job.progress
        if name == "current_latent":
            return getattr(progress, "_latents", None)
        if name == "current_image":
            return progress.preview_image()
        if name in ("stopping_generation",):
            return False
        if name == "current_image_sampling_step":
            return 0
        snap = progress.snapshot()
        if name == "job":
            return snap.job or job.kind
        if name == "time_start":
            return snap.started_at
        if name == "id_live_preview":
            return snap.preview_id
        if name == "textinfo":
            return snap.textinfo or None
        return getattr(snap, name)

    # -- A1111's methods ------------------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Interrupt the running job (its finished images are kept), as the Interrupt button does."""
        jobs = self.__dict__["_jobs"]
        if jobs is not None and jobs.current is not None:
            jobs.interrupt_current()
        else:
            self.__dict__["_idle"]["interrupted"] = True

    def skip(self) -> None:
        jobs = self.__dict__["_jobs"]
        if jobs is not None and jobs.current is not None:
            jobs.skip_current()
        else:
            self.__dict__["_idle"]["skipped"] = True

    def stop_generating(self) -> None:
        """A1111 finishes the current image first; our job queue stops at the next interrupt point and keeps the
        images already finished."""
        self.stopping_generation = True
        self.interrupt()

    def begin(self, job: str = "(unknown)") -> None:
        self.sampling_step = 0
        self.time_start = time.time()
        self.job_count = -1
        self.processing_has_refined_job_count = False
        self.job_no = 0
        self.job_timestamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
        self.current_latent = None
        self.current_image = None
        self.current_image_sampling_step = 0
        self.id_live_preview = 0
        if self._job() is None:
            self.skipped = self.interrupted = self.stopping_generation = False
        self.textinfo = None
        self.job = job

    def end(self) -> None:
        self.job = ""
        self.job_count = 0

    def nextjob(self) -> None:
        self.job_no = self.job_no + 1
        self.sampling_step = 0
        self.current_image_sampling_step = 0

    def set_current_image(self) -> None:
        """Nothing to do: the live preview is decoded when the page asks for it."""

    def do_set_current_image(self) -> None:
        """Nothing to do: the live preview is decoded when the page asks for it."""

    def assign_current_image(self, image: Any) -> None:
        self.current_image = image
        self.id_live_preview = self.id_live_preview + 1

    def dict(self) -> dict[str, Any]:
        """A1111's ``state.dict()`` (what ``/sdapi/v1/progress`` reports as ``state``)."""
        return {name: getattr(self, name) for name in ("skipped", "interrupted", "stopping_generation", "job",
                                                        "job_count", "job_timestamp", "job_no", "sampling_step",
                                                        "sampling_steps")}

    @property
    def server_command(self) -> str | None:
        return self.__dict__["_server_command"]

    @server_command.setter
    def server_command(self, value: str | None) -> None:
        self.__dict__["_server_command"] = value
        self.__dict__["_server_command_signal"].set()

    def wait_for_server_command(self, timeout: float | None = None) -> str | None:
        signal = self.__dict__["_server_command_signal"]
        if signal.wait(timeout):
            signal.clear()
            command, self.__dict__["_server_command"] = self.__dict__["_server_command"], None
            return command
        return None

    def request_restart(self) -> None:
        """Recorded as A1111's ``server_command``; the app restarts through ``/sdapi/v1/server-restart``."""
        self.interrupt()
        self.server_command = "restart"

    @property
    def need_restart(self) -> bool:
        return self.server_command == "restart"

    @need_restart.setter
    def need_restart(self, value: bool) -> None:
        if value:
            self.server_command = "restart"


class TotalTQDM:
    """A1111's console progress bar over all jobs; the progress lives in the page and the job API here."""

    def reset(self) -> None: ...
    def update(self) -> None: ...
    def updateTotal(self, new_total: int) -> None: ...  # noqa: N802 - A1111's name
    def clear(self) -> None: ...


state: State = State()
total_tqdm = TotalTQDM()


def _plain(text: str) -> str:
    """An A1111 setting comment (HTML) as the plain text our Settings tab shows: tags dropped, entities decoded."""
    import html
    import re

    return html.unescape(re.sub(r"<[^>]*>", "", str(text))).strip()


class _NeedsReloadUI:
    """``info.needs_reload_ui`` of an A1111-made option: a flag for our Settings tab (``if info.needs_reload_ui``)
    and, called, A1111's builder method ``needs_reload_ui()`` that sets it and returns the option."""

    __slots__ = ("_info",)

    def __init__(self, info: OptionInfo) -> None:
        self._info = info

    def __bool__(self) -> bool:
        return bool(self._info.__dict__.get("_reload_ui", False))

    def __call__(self) -> OptionInfo:
        self._info.__dict__["_reload_ui"] = True
        return self._info._add_comment("(requires Reload UI)")

    def __eq__(self, other: object) -> bool:
        return bool(self) == other

    def __hash__(self) -> int:
        return hash(bool(self))

    def __repr__(self) -> str:
        return repr(bool(self))


class OptionInfo(_options.OptionInfo):
    """A1111's ``shared.OptionInfo(default, label, component, component_args, onchange, section, refresh, ...)``: one
    of our options (a Radio or Dropdown's ``choices`` become the accepted values, ``minimum``/``maximum``/``step``
    the bounds) with A1111's attributes (``component``, ``component_args``, ``refresh``, ``comment_before``/
    ``comment_after``, ``category_id``) and builder methods, each returning the option:
    ``info(text)`` and ``html(text)`` (the comment under the setting, shown as plain text: HTML tags are dropped),
    ``link(label, url)`` (label and address in the comment), ``js(label, func)`` (the label in the comment; the
    JavaScript call is kept in ``js_actions`` and not wired to anything), ``needs_restart()`` and
    ``needs_reload_ui()`` (said in the comment; the latter also makes Settings offer to reload the page). A class,
    as in A1111, so extensions can test ``isinstance`` or add methods to it."""

    def __init__(self, default: Any = None, label: str = "", component: Any = None, component_args: Any = None,
                 onchange: Callable[[], None] | None = None, section: tuple[str, str] | None = None,
                 refresh: Any = None, comment_before: str = "", comment_after: str = "",
                 infotext: str | None = None, restrict_api: bool = False, category_id: str | None = None,
                 **_: Any) -> None:
        args = component_args() if callable(component_args) else (component_args or {})
        choices = args.get("choices") if isinstance(args, dict) else None
        super().__init__(default, label, section or ("other", "Other"), choices=choices, restricted=restrict_api,
                         infotext=infotext, comment=_plain(" ".join(c for c in (comment_before, comment_after) if c)),
                         onchange=onchange)
        if isinstance(args, dict):
            self.minimum, self.maximum, self.step = args.get("minimum"), args.get("maximum"), args.get("step")
        self.component, self.component_args, self.refresh = component, component_args, refresh
        self.comment_before, self.comment_after = comment_before, comment_after
        self.category_id = category_id
        self.js_actions: list[tuple[str, str]] = []

    @property  # type: ignore[override]
    def needs_reload_ui(self) -> _NeedsReloadUI:
        return _NeedsReloadUI(self)

    @needs_reload_ui.setter
    def needs_reload_ui(self, value: Any) -> None:
        self.__dict__["_reload_ui"] = bool(value)

    def _add_comment(self, text: str) -> OptionInfo:
        text = _plain(text)
        self.comment = f"{self.comment} {text}".strip() if self.comment else text
        return self

    def info(self, info: str) -> OptionInfo:
        self.comment_after += f" ({info})" if self.comment_after else f"({info})"
        return self._add_comment(f"({info})")

    def html(self, html: str) -> OptionInfo:
        self.comment_after += html
        return self._add_comment(html)

    def link(self, label: str, url: str) -> OptionInfo:
        self.comment_before += f"[{label}]"
        return self._add_comment(f"[{label}: {url}]")

    def js(self, label: str, js_func: str) -> OptionInfo:
        self.comment_before += f"[{label}]"
        self.js_actions.append((label, js_func))
        return self._add_comment(f"[{label}]")

    def needs_restart(self) -> OptionInfo:
        self.comment_after += " (requires restart)"
        return self._add_comment("(requires restart)")


def options_section(section_identifier: tuple[str, str], options_dict: dict[str, Any]) -> dict[str, Any]:
    """A1111's ``options_section(("id", "Title"), {key: OptionInfo})``: the same options, each put in the section."""
    for value in options_dict.values():
        if len(section_identifier) == 2:
            value.section = section_identifier
        elif len(section_identifier) == 3:
            value.section, value.category_id = section_identifier[0:2], section_identifier[2]
    return options_dict


def natural_sort_key(s: str, regex: Any = None) -> list[Any]:
    from modules.models.scan import natural_sort_key as key

    return key(s)


def listfiles(dirname: str) -> list[str]:
    """A1111's helper: the files of a folder (not hidden), full paths, naturally sorted."""
    names = [name for name in sorted(os.listdir(dirname), key=natural_sort_key) if not name.startswith(".")]
    return [os.path.join(dirname, name) for name in names if os.path.isfile(os.path.join(dirname, name))]


def walk_files(path: str, allowed_extensions: Any = None) -> Any:
    """A1111's helper: every file under ``path`` (following links), optionally only some extensions."""
    if not os.path.exists(path):
        return
    wanted = set(allowed_extensions) if allowed_extensions is not None else None
    for root, _dirs, files in os.walk(path, followlinks=True):
        for filename in sorted(files, key=natural_sort_key):
            if wanted is not None and os.path.splitext(filename)[1] not in wanted:
                continue
            yield os.path.join(root, filename)


def __getattr__(name: str) -> Any:
    """Names read from the running app each time: ``sd_model`` (the loaded model, None before the first load),
    ``device``, ``sd_upscalers``, ``list_checkpoint_tiles`` and A1111's other ``shared_items`` re-exports."""
    if name == "sd_model":
        if runtime is None:
            return None
        from modules import sd_models

        return sd_models.annotate(runtime.manager.model)
    if name == "device":
        from modules import devices

        return devices.device
    if name == "sd_upscalers":  # A1111's UpscalerData list: "None", "Lanczos", "Nearest", then the models
        from modules.upscaler import app_upscalers

        return app_upscalers(runtime.upscalers) if runtime is not None else []
    if name in ("list_checkpoint_tiles", "refresh_checkpoints", "list_samplers", "reload_hypernetworks"):
        from modules import shared_items

        return getattr(shared_items, name)
    raise AttributeError(f"module 'modules.shared' has no attribute {name!r}")


# A1111's cmd_opts folder flags and the folder kind each defaults to (A1111 fills them from models_path).
_FOLDER_FLAGS = {"ckpt_dir": "checkpoints", "vae_dir": "vae", "lora_dir": "lora", "hypernetwork_dir": "hypernetworks",
                 "esrgan_models_path": "esrgan", "realesrgan_models_path": "realesrgan",
                 "gfpgan_models_path": "gfpgan", "codeformer_models_path": "codeformer",
                 "swinir_models_path": "swinir", "dat_models_path": "dat", "bsrgan_models_path": "bsrgan",
                 "ldsr_models_path": "ldsr", "scunet_models_path": "scunet"}


def _folder_defaults(paths: Any) -> dict[str, Any]:
    """A1111's defaults for the folder flags, as our folders: ``--lora-dir`` is ``models/Lora`` when not given..."""
    out: dict[str, Any] = {flag: str(paths.model_dir(kind)) for flag, kind in _FOLDER_FLAGS.items()}
    out.update(data_dir=str(paths.data_dir), models_dir=str(paths.models_dir),
               embeddings_dir=str(paths.data_dir / "embeddings"), localizations_dir=str(paths.localizations_dir),
               ui_settings_file=str(paths.config_file), ui_config_file=str(paths.ui_config_file),
               styles_file=[str(paths.styles_file)])
    return out


def _cmd_opts_view(rt: Any) -> Any:
    """A copy of the flags for extensions, with every folder flag A1111 defaults filled in with our folder (A1111
    never leaves ``cmd_opts.lora_dir`` & co. None). A copy, so the app's own flags (``rt.args``, what
    ``/sdapi/v1/cmd-flags`` reports) stay as given; a flag given on the command line is kept as given."""
    from modules.cmd_args import CmdOpts

    view = CmdOpts(**vars(rt.args))
    view.given = set(getattr(rt.args, "given", set()) or set())
    for name, value in _folder_defaults(rt.paths).items():
        if getattr(view, name, None) in (None, "", []):
            setattr(view, name, value)
    # /file= serves what is inside the extensions folder (modules/ui/extension_assets.py), wherever the data folder
    # is; prompt-all-in-one looks for its folder here and warns at every start otherwise.
    allowed = list(getattr(view, "gradio_allowed_path", None) or [])
    if str(rt.paths.extensions_dir) not in allowed:
        view.gradio_allowed_path = [*allowed, str(rt.paths.extensions_dir)]
    return view


def _clear_registries() -> None:
    """Empty every A1111 registry the facade keeps at module level (the only module-level state of the app), so
    an app built again in one process (a reload, the tests) starts from what its own extensions register."""
    from modules import (extra_networks, infotext_utils, progress, script_callbacks, scripts, scripts_postprocessing,
                         sd_models)

    script_callbacks.clear()
    scripts.script_classes.clear()
    scripts_postprocessing.script_classes.clear()
    scripts.errors.clear()
    infotext_utils.reset()
    extra_networks.initialize()
    progress.reset()
    sd_models.checkpoints_loaded.clear()
    for registry in (restricted_opts, settings_components, tab_names, loaded_hypernetworks):
        registry.clear()


def bind(rt: Any) -> None:
    """Point the facade at the running app (called once per app build)."""
    global opts, cmd_opts, runtime, prompt_styles
    global script_path, data_path, models_path, extensions_dir, extensions_builtin_dir, config_filename
    global sd_model_file, default_sd_model_file, styles_filename
    from modules import paths

    opts, cmd_opts, runtime, prompt_styles = rt.options, _cmd_opts_view(rt), rt, rt.styles
    state._bind(rt.jobs)
    paths.data_path, paths.models_path = str(rt.paths.data_dir), str(rt.paths.models_dir)
    paths.extensions_dir = str(rt.paths.extensions_dir)
    script_path, data_path, models_path = paths.script_path, paths.data_path, paths.models_path
    extensions_dir, extensions_builtin_dir = paths.extensions_dir, paths.extensions_builtin_dir
    config_filename = str(rt.options.path)
    default_sd_model_file = sd_model_file = os.path.join(script_path, "model.ckpt")
    styles_filename = [str(p) for p in getattr(rt.styles, "paths", [])] or list(cmd_opts.styles_file)
    _clear_registries()
    restricted_opts.update(k for k, info in rt.options.registry.items() if info.restricted)
    # A1111 imports these at start, so extensions reach them as ``modules.sd_models`` after ``import modules``.
    import modules.call_queue  # noqa: F401
    import modules.extra_networks  # noqa: F401
    import modules.infotext_utils  # noqa: F401
    import modules.sd_hijack  # noqa: F401
    import modules.sd_models  # noqa: F401
    import modules.shared_items  # noqa: F401
    from modules import ui_extra_networks

    ui_extra_networks.initialize()  # this app's pages (Textual Inversion, Checkpoints, Lora), as A1111 registers
    ui_extra_networks.register_default_pages()
