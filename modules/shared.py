"""A1111's ``modules.shared`` for extensions: ``opts`` (the settings, with ``add_option``/``onchange``/``data``),
``cmd_opts`` (the parsed flags), ``OptionInfo`` with A1111's signature, and ``state``.

This module is only a facade for extension code: our own code receives the runtime explicitly and never reads it.
``bind(runtime)`` fills it in when the app is built.
"""

from __future__ import annotations

from typing import Any, Callable

from modules import options as _options

opts: Any = None  # modules.options.Options once bound
cmd_opts: Any = None  # the parsed command line
state: Any = None  # the job queue's view for extensions (interrupt/skip)
runtime: Any = None


class _State:
    """The few members of A1111's ``shared.state`` extensions use to control a running job."""

    def __init__(self, jobs: Any) -> None:
        self._jobs = jobs

    def interrupt(self) -> None:
        self._jobs.interrupt_current()

    def skip(self) -> None:
        self._jobs.skip_current()

    def _progress(self) -> Any:
        current = self._jobs.current
        return current.progress if current is not None else None

    @property
    def job_count(self) -> int:
        progress = self._progress()
        return progress.snapshot().job_count if progress is not None else 0

    @job_count.setter
    def job_count(self, value: int) -> None:
        """Scripts announce how many jobs they will run; our progress counts the ones it sees."""

    @property
    def interrupted(self) -> bool:
        progress = self._progress()
        return bool(progress is not None and progress.interrupted)

    @property
    def skipped(self) -> bool:
        progress = self._progress()
        return bool(progress is not None and progress.snapshot().skipped)

    @property
    def textinfo(self) -> str:
        return ""

    @textinfo.setter
    def textinfo(self, value: str) -> None:
        progress = self._progress()
        if progress is not None:
            progress.set_textinfo(str(value))


def OptionInfo(default: Any = None, label: str = "", component: Any = None,  # noqa: N802 - A1111's name
               component_args: Any = None, onchange: Callable[[], None] | None = None,
               section: tuple[str, str] | None = None, refresh: Any = None, comment_before: str = "",
               comment_after: str = "", infotext: str | None = None, restrict_api: bool = False,
               category_id: str | None = None, **_: Any) -> _options.OptionInfo:
    """A1111's ``shared.OptionInfo(default, label, component, component_args, ..., section=...)`` as ours; a Radio
    or Dropdown's ``choices`` become the accepted values."""
    args = component_args() if callable(component_args) else (component_args or {})
    choices = args.get("choices") if isinstance(args, dict) else None
    info = _options.OptionInfo(default, label, section or ("other", "Other"), choices=choices,
                               restricted=restrict_api, infotext=infotext, comment=comment_after or comment_before,
                               onchange=onchange)
    if isinstance(args, dict):
        info.minimum, info.maximum, info.step = args.get("minimum"), args.get("maximum"), args.get("step")
    return info


def __getattr__(name: str) -> Any:
    """``shared.sd_model``: the loaded model (None before the first load), as extensions read it."""
    if name == "sd_model":
        return runtime.manager.model if runtime is not None else None
    raise AttributeError(f"module 'modules.shared' has no attribute {name!r}")


def bind(rt: Any) -> None:
    """Point the facade at the running app (called once per app build)."""
    global opts, cmd_opts, state, runtime
    from modules import paths

    opts, cmd_opts, state, runtime = rt.options, rt.args, _State(rt.jobs), rt
    paths.data_path, paths.models_path = str(rt.paths.data_dir), str(rt.paths.models_dir)
    paths.extensions_dir = str(rt.paths.extensions_dir)
