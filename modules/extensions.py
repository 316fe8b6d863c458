"""A1111 extensions: folders under ``<data-dir>/extensions`` (and ``extensions-builtin``) with ``install.py``,
``preload.py``, ``scripts/*.py``, ``javascript/*.js|*.mjs``, ``style.css`` and ``localizations/*.json``.

Which ones are active follows A1111: ``disabled_extensions`` and ``disable_all_extensions`` ("none"/"extra"/"all") in
config.json, and ``--disable-all-extensions`` / ``--disable-extra-extensions``. An extension that fails anywhere
(its installer, preload, a script that raises or hangs at import) is reported with the reason and skipped; the app
always starts. Loading a script runs its top-level code, which registers callbacks through the A1111 facade
(``modules.script_callbacks``, ``modules.scripts``, ``modules.shared``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import json
import logging
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from modules import a1111_internals, pip_constraints
from modules.paths import INSTALL_DIR

log = logging.getLogger(__name__)

BUILTIN_DIR = INSTALL_DIR / "extensions-builtin"
BUILTIN_SCRIPTS_DIR = INSTALL_DIR / "scripts"  # our own Script classes, loaded like A1111's scripts/ folder
INSTALL_TIMEOUT = 600.0  # seconds an install.py may take
# seconds a script may take to import before it is reported as hanging (tests shorten it)
IMPORT_TIMEOUT = float(os.environ.get("WEBUI_EXTENSION_IMPORT_TIMEOUT", "30"))


@dataclass
class Extension:
    name: str  # the folder name (what disabled_extensions lists)
    path: Path
    is_builtin: bool = False
    enabled: bool = True
    errors: list[str] = field(default_factory=list)  # what went wrong (installer, preload, scripts)
    loaded_scripts: list[str] = field(default_factory=list)
    install_failed: bool = False  # its install.py failed: a script that then cannot import says so in that line
    notes: list[str] = field(default_factory=list)  # what was done differently, not wrong (extras left out)
    replaced_by: str | None = None  # built into this app: the folder is not loaded (see ``BUILT_IN``)
    _git: Any = field(default=None, repr=False, compare=False)

    def files(self, folder: str, suffixes: tuple[str, ...]) -> list[Path]:
        directory = self.path / folder
        if not directory.is_dir():
            return []
        return sorted((p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in suffixes),
                      key=lambda p: p.name.lower())

    def scripts(self) -> list[Path]:
        return self.files("scripts", (".py",))

    def javascript(self) -> list[Path]:
        return self.files("javascript", (".js", ".mjs"))

    def stylesheet(self) -> Path | None:
        css = self.path / "style.css"
        return css if css.is_file() else None

    def git(self, refresh: bool = False) -> Any:
        """The checkout's ``extension_git.GitInfo`` (read once, on first use: starting stays fast)."""
        from modules import extension_git

        if refresh or self._git is None:
            self._git = extension_git.git_info(self.path)
        return self._git

    def metadata(self) -> Metadata:
        return read_metadata(self.path)

    def api_item(self) -> dict[str, Any]:
        """A1111's /sdapi/v1/extensions item."""
        info = self.git()
        return {"name": self.name, "remote": info.remote, "branch": info.branch, "commit_hash": info.commit_hash,
                "commit_date": info.commit_date, "version": info.version, "enabled": self.enabled}


@dataclass(frozen=True)
class Metadata:
    """What an extension's ``metadata.ini`` says (A1111): its canonical ``Name`` and the extensions it
    ``Requires`` (loaded before it; a missing one is reported)."""

    name: str | None = None
    requires: tuple[str, ...] = ()


def read_metadata(path: Path) -> Metadata:
    import configparser

    file = path / "metadata.ini"
    if not file.is_file():
        return Metadata()
    parser = configparser.ConfigParser()
    try:
        parser.read(file, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError) as err:
        log.warning("extension %s: metadata.ini is unreadable: %s", path.name, err)
        return Metadata()
    section = parser["Extension"] if parser.has_section("Extension") else {}
    requires = tuple(r.strip() for r in str(section.get("Requires", "") or "").replace(",", " ").split() if r.strip())
    return Metadata(name=(section.get("Name") or None), requires=requires)


def load_order(extensions: Iterable[Extension]) -> list[Extension]:
    """Active extensions with each one after those its metadata.ini ``Requires`` (by folder or ``Name``),
    otherwise in discovery order; a missing requirement or a cycle is reported on the extension."""
    items = active(extensions)
    by_name: dict[str, Extension] = {}
    for ext in items:
        by_name[ext.name.lower()] = ext
        meta_name = ext.metadata().name
        if meta_name:
            by_name.setdefault(meta_name.lower(), ext)
    ordered: list[Extension] = []
    visiting: set[str] = set()

    def visit(ext: Extension) -> None:
        if ext in ordered:
            return
        if ext.name in visiting:
            ext.errors.append("metadata.ini: its Requires form a cycle; loaded in folder order")
            return
        visiting.add(ext.name)
        for required in ext.metadata().requires:
            other = by_name.get(required.lower())
            if other is None:
                ext.errors.append(f"metadata.ini: requires {required}, which is not installed or not enabled")
            elif other is not ext:
                visit(other)
        visiting.discard(ext.name)
        if ext not in ordered:
            ordered.append(ext)

    for ext in items:
        visit(ext)
    return ordered


def extension_roots(data_dir: Path) -> list[tuple[Path, bool]]:
    return [(BUILTIN_DIR, True), (data_dir / "extensions", False)]


# Extensions whose work this app does itself (Forge keeps the same kind of list): loading them would patch internals
# we do not have. Known by folder name, or by the files that make them (a clone under another name).
BUILT_IN: dict[str, tuple[tuple[str, ...], str]] = {
    "sd-webui-controlnet": (("internal_controlnet/args.py", "scripts/controlnet.py"),
                            "ControlNet is built in (this extension's API, units, preprocessors and UI); the "
                            "extension folder is not loaded."),
}


def built_in_replacement(path: Path) -> str | None:
    """The note for an extension folder that this app replaces, or None."""
    for name, (marks, note) in BUILT_IN.items():
        if path.name.lower() == name or all((path / mark).is_file() for mark in marks):
            return note
    return None


def discover(data_dir: Path, settings: dict[str, Any], args: Any = None) -> list[Extension]:
    """Every extension folder, builtin first, each alphabetically, with ``enabled`` decided as in A1111."""
    disabled = set(settings.get("disabled_extensions") or [])
    mode = str(settings.get("disable_all_extensions") or "none")
    if args is not None and getattr(args, "disable_all_extensions", False):
        mode = "all"
    elif args is not None and getattr(args, "disable_extra_extensions", False) and mode == "none":
        mode = "extra"
    found: list[Extension] = []
    seen: set[str] = set()
    for root, builtin in extension_roots(data_dir):
        if not root.is_dir():
            continue
        for path in sorted(root.iterdir(), key=lambda p: p.name.lower()):
            if not path.is_dir() or path.name.startswith((".", "__")):
                continue
            if path.name in seen:
                log.error("extension %s exists twice; %s is ignored", path.name, path)
                continue
            seen.add(path.name)
            enabled = path.name not in disabled and mode != "all" and not (mode == "extra" and not builtin)
            replaced = built_in_replacement(path)
            if replaced:
                log.info("extension %s: %s", path.name, replaced)
            found.append(Extension(path.name, path, is_builtin=builtin, enabled=enabled and not replaced,
                                   notes=[replaced] if replaced else [], replaced_by=replaced and "built-in"))
    return found


def active(extensions: Iterable[Extension] | None = None) -> list[Extension]:
    """The enabled ones; without an argument, A1111's ``extensions.active()``: those of the running app."""
    return [e for e in (_running()[0] if extensions is None else extensions) if e.enabled]


def _running() -> tuple[list[Extension], Path | None]:
    """The running app's extensions and data dir (for A1111's module attributes; our code passes them)."""
    from modules import shared

    rt = shared.runtime
    if rt is None:
        return [], None
    return list(getattr(rt, "extensions", None) or []), Path(rt.paths.data_dir)


def __getattr__(name: str) -> Any:
    """A1111's ``extensions.extensions`` (every extension found, builtin first), ``extensions_dir`` and
    ``extensions_builtin_dir``, read from the running app each time."""
    if name == "extensions":
        return _running()[0]
    if name == "extensions_dir":
        data_dir = _running()[1]
        return str((data_dir or INSTALL_DIR) / "extensions")
    if name == "extensions_builtin_dir":
        return str(BUILTIN_DIR)
    raise AttributeError(f"module 'modules.extensions' has no attribute {name!r}")


# -- install.py --------------------------------------------------------------------------------------------------


def _install_state(data_dir: Path) -> Path:
    return data_dir / "cache" / "extensions-installed.json"


def run_installers(extensions: Iterable[Extension], data_dir: Path, skip: bool = False) -> None:
    """Run each active extension's install.py when it is new or changed since its last successful run (A1111 runs
    it at every start; a hash keeps starts fast). Output goes to the log; a failure is recorded on the extension."""
    if skip:
        return
    from modules import fileio

    state_file = _install_state(data_dir)
    try:
        state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else {}
    except (OSError, ValueError):
        state = {}
    changed = False
    constraints: Path | None = None
    packages: str | None = None  # the installed packages' fingerprint, read when an installer needs it (~0.1 s)
    failed: list[tuple[Extension, Path, str, int, str]] = []
    try:
        for ext in active(extensions):
            installer = ext.path / "install.py"
            if not installer.is_file():
                continue
            digest = hashlib.sha256(installer.read_bytes()).hexdigest()
            recorded = state.get(ext.name)
            if recorded == digest:
                continue
            if isinstance(recorded, dict) and recorded.get("done") == digest:  # done, with something to say
                ext.notes.extend(recorded.get("notes") or [])
                continue
            packages = packages or _environment_fingerprint()
            if isinstance(recorded, dict) and recorded.get("failed") == digest and recorded.get("packages") == packages:
                # the same installer against the same packages fails the same way (a resolver run can take a
                # minute): say it again, run it again only when either changes
                ext.errors.append(f"{recorded.get('error', 'install.py failed')} (not run again: install.py and "
                                  "the installed packages are unchanged)")
                ext.install_failed = True
                continue
            constraints = constraints or pip_constraints.write_constraints()
            errors_before = len(ext.errors)
            if _run_installer(ext, installer, constraints):
                state[ext.name] = {"done": digest, "notes": ext.notes} if ext.notes else digest
                packages = None  # it may have installed something: read again when needed
            else:
                failed.append((ext, installer, digest, errors_before, packages))
            changed = True
        if failed and constraints is not None:
            _retry_failed(failed, state, constraints)
    finally:
        if constraints is not None:
            constraints.unlink(missing_ok=True)
    if changed:
        try:
            state_file.parent.mkdir(parents=True, exist_ok=True)
            fileio.atomic_write_text(state_file, json.dumps(state, indent=2), backup=False)
        except OSError as err:
            log.warning("could not record extension installs: %s", err)


def _retry_failed(failed: list[tuple[Extension, Path, str, int, str]], state: dict[str, Any],
                  constraints: Path) -> None:
    """Installers that failed in this run against packages another one then changed run once more now (what the
    later one installed may be what the earlier one lacked); each failure is recorded against the packages as they
    are at the end, so the next start does not run it again for a change made during this one."""
    final = _environment_fingerprint()
    still_failing = []
    retried = False
    for ext, installer, digest, errors_before, packages_then in failed:
        if packages_then != final:
            retried = True
            del ext.errors[errors_before:]
            if _run_installer(ext, installer, constraints):
                state[ext.name] = {"done": digest, "notes": ext.notes} if ext.notes else digest
                continue
        still_failing.append((ext, digest, errors_before))
    if retried:  # the retries may have installed something
        final = _environment_fingerprint()
    for ext, digest, errors_before in still_failing:
        ext.install_failed = True
        state[ext.name] = {"failed": digest, "packages": final, "error": "; ".join(ext.errors[errors_before:])}


def _environment_fingerprint() -> str:
    """Every installed distribution and its version: a failed installer runs again once anything here changes (the
    user installed the missing package by hand, or another extension brought it)."""
    from importlib import metadata

    found = sorted(f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in metadata.distributions())
    return hashlib.sha256("\n".join(found).encode()).hexdigest()


def _run_installer(ext: Extension, installer: Path, constraints: Path) -> bool:
    """Run one install.py with pip held to the app's package versions; True when it succeeded. Failures are
    recorded on the extension (shown on the Extensions tab)."""
    from modules import package_blocklist

    blocked = package_blocklist.extension_problems(ext.path)
    if blocked:  # never run an installer that pins a known-malicious release
        ext.errors.append("install.py was not run: " + "; ".join(blocked))
        log.error("extension %s: install.py not run: %s", ext.name, "; ".join(blocked))
        return False
    before = pip_constraints.constraint_lines()
    started = time.perf_counter()
    env = {**_env(), "PYTHONPATH": str(INSTALL_DIR), "PIP_CONSTRAINT": str(constraints),
           pip_constraints.EXTENSION_ENV: ext.name}
    done = _run_install_py(ext, installer, env)
    if done is None:
        return False
    output = (done.stdout + done.stderr).strip()
    if output:
        log.info("install.py of %s:\n%s", ext.name, output[-4000:])
    if done.returncode != 0 and _install_without_blocked_extras(ext, output, env):
        done = _run_install_py(ext, installer, env)  # it finds what it asked for, less the extras left out
        if done is None:
            return False
        output = (done.stdout + done.stderr).strip()
    changed = sorted(set(pip_constraints.constraint_lines()) - set(before))
    if changed:  # pip run with --isolated, or a package removed by hand: say so, the app may be broken
        ext.errors.append(f"install.py changed the app's packages ({', '.join(changed)}); run launch.sh "
                          "(launch.bat) again to restore them")
    if done.returncode != 0:
        ext.errors.append(f"install.py failed with exit code {done.returncode}: {_installer_failure(output)}")
        return False
    log.info("install.py of %s done in %.1f s", ext.name, time.perf_counter() - started)
    return not changed


def _run_install_py(ext: Extension, installer: Path, env: dict[str, str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run([sys.executable, str(installer)], cwd=ext.path, capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        ext.errors.append(f"install.py did not finish in {INSTALL_TIMEOUT:.0f} s")
    except OSError as err:
        ext.errors.append(f"install.py could not run: {err}")
    return None


def _install_without_blocked_extras(ext: Extension, output: str, env: dict[str, str]) -> bool:
    """When pip failed only on extras that need what this app pins (dynamic-prompts' ``magicprompt`` wants
    transformers<5), install those requirements without them, as a user would by hand; True when that worked.
    What was left out is noted on the extension."""
    notes = []
    for _ in range(3):  # dropping one extra may reveal that another one is blocked too
        fallbacks = pip_constraints.without_blocked_extras(output)
        if not fallbacks:
            break
        command = [sys.executable, "-m", "pip", "install", "--prefer-binary", *(f.requirement for f in fallbacks)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, env=env, check=False)
        notes += [f"{f.name} installed without its "
                  f"{', '.join(f.dropped)} extra{'s' if len(f.dropped) > 1 else ''} ({f.needs} cannot be had "
                  "beside this app's packages)" for f in fallbacks]
        if done.returncode == 0:
            ext.notes.extend(notes)
            log.info("extension %s: %s", ext.name, "; ".join(notes))
            return True
        output = (done.stdout or "") + (done.stderr or "")
    return False


def _installer_failure(output: str) -> str:
    """What says why an installer failed: pip's account of a requirement our pins rule out (the installer ran pip
    itself), its last exception line (e.g. run_pip's refusal naming the package), else the end of its output."""
    if any(sign in output for sign in ("ResolutionImpossible", "conflicting dependencies",
                                       "Could not find a version that satisfies")):
        return "pip could not install it beside this app's packages:\n" + pip_constraints.explain_failure(output)
    lines = [line for line in output.splitlines() if line.strip()]
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith(("RuntimeError:", "ImportError:", "ModuleNotFoundError:", "Exception:")):
            return "\n".join(lines[index:])[-800:]
    return output[-500:]


def _env() -> dict[str, str]:
    return dict(os.environ)


# -- preload.py and scripts ----------------------------------------------------------------------------------------


def missing_package(err: BaseException) -> str | None:
    """For an import that failed because a Python package is not installed (adetailer without ultralytics), the
    line that says which; None for any other failure (a bug in the extension keeps its traceback)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, ModuleNotFoundError) and err.name:
            top = err.name.split(".")[0]
            try:
                installed = importlib.util.find_spec(top) is not None
            except (ImportError, ValueError):
                installed = False
            if not installed:
                return f"ModuleNotFoundError: the Python package {top!r} is not installed"
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return None


def _import_file(path: Path, module_name: str, timeout: float) -> tuple[Any, str | None]:
    """Import ``path`` in a worker thread; (module, None), or (None, why) for an error or a hang."""
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
            result["module"] = module
        except BaseException as err:  # noqa: BLE001 - an extension's failure is reported, never raised
            sys.modules.pop(module_name, None)
            result["error"] = traceback.format_exc(limit=4)
            result["internals"] = a1111_internals.summary_of(err)
            result["missing"] = missing_package(err)

    thread = threading.Thread(target=work, name=f"import {path.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return None, f"{path.name} did not finish importing in {timeout:.0f} s and was skipped"
    if result.get("internals"):  # one line, not a traceback: nothing the user can install fixes it
        return None, f"{result['internals']} ({path.name})"
    if result.get("missing"):  # one line: the package to install is all the user needs to know
        return None, f"{path.name} raised at import: {result['missing']}"
    if "error" in result:
        return None, f"{path.name} raised at import:\n{result['error']}"
    return result.get("module"), None


def run_preloads(extensions: Iterable[Extension], parser: Any) -> None:
    """``preload(parser)`` of each active extension, so its command-line flags exist before parsing."""
    a1111_internals.install()
    for ext in active(extensions):
        preload = ext.path / "preload.py"
        if not preload.is_file():
            continue
        module, error = _import_file(preload, f"extension_preload_{_ident(ext.name)}", IMPORT_TIMEOUT)
        if error is None and module is not None and hasattr(module, "preload"):
            try:
                module.preload(parser)
            except Exception:  # noqa: BLE001
                error = "preload() raised:\n" + traceback.format_exc(limit=4)
        if error:
            ext.errors.append(error)
            log.error("extension %s: %s", ext.name, error)


def load_scripts(extensions: Iterable[Extension], timeout: float | None = None) -> None:
    """Import every active extension's scripts/*.py with the extension folder on sys.path (extensions import
    their own helper modules), recording what loaded and what failed."""
    from modules import script_callbacks, scripts, scripts_postprocessing

    a1111_internals.install()  # ldm / k-diffusion imports fail with a message that says why
    ordered = load_order(extensions)
    if any(ext.scripts() for ext in ordered):  # extension scripts import gradio; ours do not (the API alone)
        from modules.ui import gradio3_compat

        gradio3_compat.install()  # the gradio 3 idioms extension UIs use (_js=, .style(), gr.Box, ...)
    scripts.script_classes.clear()  # this load's Script subclasses only (shared.bind clears the other registries)
    scripts_postprocessing.script_classes.clear()
    for script in sorted(BUILTIN_SCRIPTS_DIR.glob("*.py")):  # ours (X/Y/Z plot, ...), before the extensions'
        with script_callbacks.registering("builtin", script):
            _, error = _import_file(script, f"builtin_script_{_ident(script.stem)}", IMPORT_TIMEOUT)
        if error:
            log.error("built-in script %s: %s", script.name, error)
    for ext in ordered:
        for script in ext.scripts():
            added = str(ext.path) not in sys.path
            if added:
                sys.path.insert(0, str(ext.path))
            try:
                with script_callbacks.registering(ext.name, script):
                    _, error = _import_file(script, f"extension_{_ident(ext.name)}_{_ident(script.stem)}",
                                            IMPORT_TIMEOUT if timeout is None else timeout)
            finally:
                if added and str(ext.path) in sys.path:
                    sys.path.remove(str(ext.path))
            if error:
                _record(ext, error)
                log.error("extension %s: %s", ext.name, error.splitlines()[0])
            else:
                ext.loaded_scripts.append(script.name)


def _record(ext: Extension, error: str) -> None:
    """Add a script's import error; scripts missing the same A1111 internal share one line, and after a failed
    install.py the import error joins the installer's line (the cause) as its last line instead of a traceback."""
    cause = next((i for i, known in enumerate(ext.errors) if known.startswith("install.py")), None)
    if ext.install_failed and cause is not None and " raised at import:" in error:
        script, detail = error.split(" raised at import:", 1)
        last = next((line.strip() for line in reversed(detail.splitlines()) if line.strip()), "")
        ext.errors[cause] = f"{ext.errors[cause]}\nso the extension is not loaded: {script}: {last}"
        return
    if error.startswith(a1111_internals.NOT_HERE):
        line, _, script = error.rpartition(" (")
        for index, known in enumerate(ext.errors):
            if known.startswith(line + " ("):
                ext.errors[index] = f"{known[:-1]}, {script}"
                return
    script, marker, reason = error.partition(" raised at import: ")
    if marker and reason.startswith("ModuleNotFoundError: the Python package "):  # one line per missing package
        for index, known in enumerate(ext.errors):
            if known.endswith(marker + reason):
                ext.errors[index] = f"{known[:-len(marker + reason)]}, {script}{marker}{reason}"
                return
    ext.errors.append(error)


def _ident(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)
