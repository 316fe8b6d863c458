"""Command-line flags with AUTOMATIC1111's names, defaults and arity (contract section 10).

Users bring their ``COMMANDLINE_ARGS`` from A1111 installs, so every A1111 flag parses here. Flags this program does not
act on are accepted with a one-line warning instead of an error; only truly unknown flags are rejected.

Each flag has a status (``FLAG_STATUS``):

* ``implemented``      - webui.py acts on it;
* ``not yet effective`` - accepted, planned, but no effect yet (hypernetworks);
* ``launcher``         - handled by launch.sh / launch.bat before webui.py starts; webui.py ignores it silently;
* ``no effect``        - accepted for A1111 compatibility only.

Path flags default to ``None``: ``modules.paths.Paths.from_args`` decides the real folders from ``--data-dir``.
Pure module: no torch, no gradio.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_PORT = 7860
DEFAULT_API_ONLY_PORT = 7861  # A1111's --nowebui default

IMPLEMENTED = "implemented"
NOT_YET_EFFECTIVE = "not yet effective"
LAUNCHER = "launcher"
NO_EFFECT = "no effect"

USE_CPU_CHOICES = ("all", "sd", "interrogate", "gfpgan", "bsrgan", "esrgan", "scunet", "codeformer")

# Filled by build_parser(): canonical flag ("--listen") -> status. Identical on every build.
FLAG_STATUS: dict[str, str] = {}

_SECRET_RE = re.compile(r"auth|passw|token|secret|credential|ngrok", re.IGNORECASE)
_NOT_SECRET_SUFFIXES = ("_path", "_file", "_dir")  # a path to a secret file is not the secret itself
REDACTED = "<redacted>"


# --- Actions that remember which flags were actually given --------------------------------------------------------
# Comparing with defaults cannot tell "--port 7860" from no --port, so our actions record each flag they see.


class CmdOpts(argparse.Namespace):
    """Parsed flags. ``given`` (the canonical flags present on the command line) lives in a slot, outside ``vars()``."""

    __slots__ = ("given",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.given: set[str] = set()


def _canonical(option_strings: Sequence[str]) -> str:
    longs = [o for o in option_strings if o.startswith("--")]
    return longs[0] if longs else option_strings[0]


def _mark(action: argparse.Action, namespace: argparse.Namespace) -> None:
    if isinstance(namespace, CmdOpts):
        namespace.given.add(_canonical(action.option_strings))


class _Store(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        _mark(self, namespace)


class _StoreConst(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, const: Any = True, default: Any = False,
                 help: str | None = None, **_: Any) -> None:  # noqa: A002 - argparse's keyword
        super().__init__(option_strings, dest, nargs=0, const=const, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, self.const)
        _mark(self, namespace)


class _Append(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        items = list(getattr(namespace, self.dest, None) or [])  # copy: never mutate the shared default list
        items.append(values)
        setattr(namespace, self.dest, items)
        _mark(self, namespace)


def _add(group: argparse._ArgumentGroup, status: str, flag: str, kind: str = "str", help: str = "",  # noqa: A002
         **kw: Any) -> None:
    """Add one flag. kind: "bool" (store_true), "str"/"int" (one value), "append", "const" (custom const/default)."""
    FLAG_STATUS[flag] = status
    help = help or None  # no-effect flags: their group title says it all
    if status == NOT_YET_EFFECTIVE:
        help = f"{help} [accepted, not yet effective]"
    if kind == "bool":
        group.add_argument(flag, action=_StoreConst, const=True, default=kw.pop("default", False), help=help, **kw)
    elif kind == "const":
        group.add_argument(flag, action=_StoreConst, help=help, **kw)
    elif kind == "append":
        group.add_argument(flag, action=_Append, default=kw.pop("default", []), help=help, **kw)
    else:
        group.add_argument(flag, action=_Store, type=int if kind == "int" else kw.pop("type", str), help=help, **kw)


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (1-65535)")
    return port


# --- The parser --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """A fresh parser with every flag. Extensions' ``preload(parser)`` may add theirs before parsing."""
    p = argparse.ArgumentParser(
        prog="webui.py",
        usage="%(prog)s [options]",  # the generated one-line usage lists 130 flags; the groups below are readable
        description="Local Stable Diffusion web UI with AUTOMATIC1111-compatible flags, folders and API.",
        epilog="Flags are also read from the COMMANDLINE_ARGS environment variable (appended after the command line, "
        "as A1111 does). Flags marked 'no effect here' are accepted so existing A1111 command lines keep working.",
    )
    i, n = IMPLEMENTED, NOT_YET_EFFECTIVE  # n: accepted and parsed; the feature behind it arrives later

    g = p.add_argument_group("network and server")
    _add(g, i, "--listen", "bool", "serve on 0.0.0.0 so other machines can connect (needs an auth flag or --insecure-no-auth)")
    _add(g, i, "--port", help=f"port to serve on (default {DEFAULT_PORT}, or {DEFAULT_API_ONLY_PORT} with --nowebui)",
         type=_port, default=None)
    _add(g, i, "--server-name", help="host name or address to bind (overrides --listen)", default=None)
    _add(g, i, "--subpath", help="serve under this URL path prefix (behind a reverse proxy)", default=None)
    _add(g, i, "--cors-allow-origins", help="comma-separated list of allowed CORS origins (no spaces)", default=None)
    _add(g, i, "--cors-allow-origins-regex", help="regular expression of allowed CORS origins", default=None)
    _add(g, i, "--timeout-keep-alive", "int", "uvicorn keep-alive timeout in seconds", default=30)
    _add(g, i, "--allowed-hosts", help="comma-separated extra host names this server answers to (DNS-rebinding "
                                       "guard; loopback, --server-name and, with --listen, IP addresses always work; "
                                       "\"*\" allows any)", default=None)
    _add(g, i, "--max-request-mb", help="largest request body accepted, in MB (default 100)", type=float,
         default=100.0)
    _add(g, i, "--max-upload-mb-per-hour", help="uploads one client address may make through the page within an "
                                                "hour, in MB (default 2048)", type=float, default=2048.0)
    _add(g, i, "--max-queue-size", "int", "jobs that may wait in the queue; more are answered 503 with Retry-After "
                                          "(default 64)", default=64)
    _add(g, i, "--autolaunch", "bool", "open the UI in the default browser once it is up")
    _add(g, i, "--gradio-auth", help='UI login "user:password", or several as "u1:p1,u2:p2"', default=None)
    _add(g, i, "--gradio-auth-path", help="file with UI logins in the --gradio-auth format (one or more lines)",
         default=None)
    _add(g, i, "--insecure-no-auth", "bool",
         "allow --listen / a non-loopback --server-name without any auth flag (anyone on the network gets full access)")

    g = p.add_argument_group("API")
    _add(g, i, "--api", "bool", "serve the /sdapi/v1 API beside the UI")
    _add(g, i, "--api-auth", help='API login "user:password", or several as "u1:p1,u2:p2" (HTTP Basic)', default=None)
    _add(g, i, "--api-log", "bool", "log every API request")
    _add(g, i, "--nowebui", "bool", f"serve only the API, no UI (default port {DEFAULT_API_ONLY_PORT})")
    _add(g, i, "--api-server-stop", "bool", "enable /sdapi/v1/server-stop, -restart and -kill")
    _add(g, i, "--skip-load-model-at-start", "bool", "do not load a checkpoint at startup (first request loads it)")

    g = p.add_argument_group("paths")
    _add(g, i, "--data-dir", help="base folder of all user data: models, outputs, config, extensions, embeddings "
         "(default: the install folder)", default=None)
    _add(g, i, "--models-dir", help="models folder (default: <data-dir>/models)", default=None)
    _add(g, i, "--ckpt", help="checkpoint file to add to the list and load at startup", default=None)
    _add(g, i, "--ckpt-dir", help="extra folder of checkpoints", default=None)
    _add(g, i, "--vae-dir", help="extra folder of VAE files", default=None)
    _add(g, i, "--vae-path", help="VAE file to always use (overrides the VAE settings)", default=None)
    _add(g, i, "--lora-dir", help="extra folder of LoRA files", default=None)
    _add(g, i, "--embeddings-dir", help="extra folder of textual-inversion embeddings", default=None)
    _add(g, i, "--controlnet-dir", help="extra folder of ControlNet models", default=None)
    _add(g, i, "--controlnet-annotator-models-path", help="folder of the ControlNet preprocessors' model files "
         "(searched before models/ControlNet/annotators)", default=None)
    _add(g, n, "--hypernetwork-dir", help="extra folder of hypernetworks", default=None)
    _add(g, i, "--localizations-dir", help="extra folder of localization .json files", default=None)
    for name, what in (("esrgan", "ESRGAN"), ("realesrgan", "RealESRGAN"), ("gfpgan", "GFPGAN"),
                       ("codeformer", "CodeFormer"), ("swinir", "SwinIR"), ("dat", "DAT")):
        _add(g, i, f"--{name}-models-path", help=f"extra folder of {what} models", default=None)
    _add(g, i, "--ui-settings-file", help="settings file (default: <data-dir>/config.json)", default=None)
    _add(g, i, "--ui-config-file", help="UI defaults file (default: <data-dir>/ui-config.json)", default=None)
    _add(g, i, "--styles-file", "append", "styles CSV file or glob; repeatable (default: <data-dir>/styles.csv)")

    g = p.add_argument_group("precision and devices")
    _add(g, i, "--no-half", "bool", "keep the model in 32-bit floats")
    _add(g, i, "--no-half-vae", "bool", "keep the VAE in 32-bit floats")
    _add(g, i, "--precision", help="evaluate at this precision", choices=("full", "half", "autocast"),
         default="autocast")
    _add(g, i, "--use-cpu", help=f"run these parts on the CPU, one or more of: {', '.join(USE_CPU_CHOICES)}",
         nargs="+", type=str.lower, choices=USE_CPU_CHOICES, metavar="PART", default=[])
    _add(g, i, "--medvram", "bool", "keep only the running model part (text encoder, UNet, VAE) on the GPU")
    _add(g, i, "--medvram-sdxl", "bool", "--medvram for SDXL checkpoints only")
    _add(g, i, "--lowvram", "bool", "offload the UNet and text encoders layer by layer (smallest GPUs; slowest)")
    _add(g, i, "--opt-channelslast", "bool", "run the UNet in channels-last memory layout")
    _add(g, i, "--compile", help="torch.compile the UNet: 'blocks' (repeated blocks, quick warm-up; the default) or "
         "'graphs' (whole UNet with CUDA graphs, for one fixed size)", nargs="?", const="blocks",
         choices=("blocks", "graphs"), default=None)

    g = p.add_argument_group("UI, settings and safety")
    _add(g, i, "--theme", help="force the light or dark UI theme", choices=("light", "dark"), default=None)
    _add(g, i, "--freeze-settings", "bool", "make all settings read-only")
    _add(g, i, "--hide-ui-dir-config", "bool", "hide folder settings in the UI")
    _add(g, i, "--enable-insecure-extension-access", "bool", "allow extension installs even when network-exposed")
    _add(g, i, "--disable-all-extensions", "bool", "load no extensions at all")
    _add(g, i, "--disable-extra-extensions", "bool", "load only built-in extensions")
    _add(g, i, "--no-hashing", "bool", "do not compute sha256 of checkpoints")
    _add(g, i, "--no-download-sd-model", "bool", "do not download SD 1.5 when no checkpoint is found")
    _add(g, i, "--no-download-interrogate-models", "bool",
         "do not offer to download missing img2text (Interrogate CLIP, DeepBooru, WD14) weights")
    _add(g, i, "--disable-nan-check", "bool", "do not check generated latents/images for NaNs")
    _add(g, i, "--no-prompt-history", "bool", "do not write params.txt with the last generation's parameters")

    g = p.add_argument_group("launcher (handled by launch.sh / launch.bat; webui.py ignores them)")
    _add(g, LAUNCHER, "--skip-install", "bool", "do not install or update packages")
    _add(g, LAUNCHER, "--reinstall-torch", "bool", "reinstall torch before starting")
    _add(g, LAUNCHER, "--exit", "bool", "install, then exit without starting")
    _add(g, LAUNCHER, "-f", "bool", "allow running as root without a warning")

    _add_compat_flags(p.add_argument_group("accepted for A1111 compatibility, no effect here"))
    return p


def _add_compat_flags(g: argparse._ArgumentGroup) -> None:
    """Every other A1111 v1.10.1 flag (core, launch.py and built-in extensions' preload), with A1111's arity."""
    x = NO_EFFECT
    for flag in (
        # launch.py
        "--update-all-extensions", "--skip-python-version-check", "--skip-torch-cuda-test", "--reinstall-xformers",
        "--update-check", "--test-server", "--log-startup", "--skip-prepare-environment", "--dump-sysinfo",
        "--skip-version-check",
        # network
        "--share", "--gradio-debug", "--no-gradio-queue",
        # devices, memory, attention
        "--lowram", "--upcast-sampling", "--use-ipex", "--disable-model-loading-ram-optimization",
        "--xformers", "--force-enable-xformers", "--xformers-flash-attention", "--opt-sdp-attention",
        "--opt-sdp-no-mem-attention", "--opt-split-attention", "--opt-split-attention-v1",
        "--opt-split-attention-invokeai", "--opt-sub-quad-attention", "--disable-opt-split-attention",
        # safety / UI / misc
        "--disable-safe-unpickle", "--allow-code", "--administrator", "--use-textbox-seed",
        "--disable-console-progressbars", "--ui-debug-mode", "--do-not-download-clip", "--unix-filenames-sanitization",
        "--no-progressbar-hiding",
        # deprecated no-ops in A1111 itself
        "--always-batch-cond-uncond", "--unload-gfpgan", "--deepdanbooru", "--show-negative-prompt",
        "--add-stop-route", "--enable-console-prompts",
    ):
        _add(g, x, flag, "bool")
    _add(g, x, "--gradio-queue", "bool", default=True)  # A1111: store_true with default True
    _add(g, x, "--disable-tls-verify", "const", const=False, default=None)  # A1111: store_false, default None
    for flag in (
        "--loglevel", "--config", "--gfpgan-dir", "--gfpgan-model", "--textual-inversion-templates-dir",
        "--ngrok", "--ngrok-region", "--ngrok-options", "--tls-keyfile", "--tls-certfile", "--device-id",
        "--freeze-settings-in-sections", "--freeze-specific-settings", "--gradio-img2img-tool", "--gradio-inpaint-tool",
        "--bsrgan-models-path", "--ldsr-models-path", "--scunet-models-path", "--clip-models-path",
        "--lyco-dir-backcompat",
    ):
        _add(g, x, flag, default="" if flag == "--ngrok-region" else None)
    for flag, default in (("--max-batch-count", 16), ("--sub-quad-q-chunk-size", 1024), ("--sub-quad-kv-chunk-size", None),
                          ("--sub-quad-chunk-threshold", None), ("--filenames-max-length", 128)):
        _add(g, x, flag, "int", default=default)
    _add(g, x, "--gradio-allowed-path", "append")


# --- Parsing -------------------------------------------------------------------------------------------------------


def split_commandline_args(value: str, windows: bool | None = None) -> list[str]:
    """Split COMMANDLINE_ARGS like A1111 (shlex), but keep Windows backslashes (``C:\\models``) intact.

    A1111 uses POSIX shlex everywhere, which turns an unquoted ``C:\\models`` into ``C:models``; on Windows we split
    in non-POSIX mode and strip one pair of surrounding quotes instead.
    """
    if windows is None:
        windows = os.name == "nt"
    if not windows:
        return shlex.split(value)
    lexer = shlex.shlex(value, posix=False)
    lexer.whitespace_split = True
    lexer.commenters = ""
    out = []
    for tok in lexer:
        if len(tok) >= 2 and tok[0] == tok[-1] and tok[0] in "\"'":
            tok = tok[1:-1]
        out.append(tok)
    return out


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None, *,
               parser: argparse.ArgumentParser | None = None, warn: bool = True,
               check_access: bool = True) -> CmdOpts:
    """Parse ``argv`` (default ``sys.argv[1:]``) followed by ``COMMANDLINE_ARGS`` from ``environ``.

    Unknown flags exit with an argparse error (status 2), unless ``IGNORE_CMD_ARGS_ERRORS`` is set (A1111). A
    network-exposed server without any auth flag is refused unless ``--insecure-no-auth``.
    """
    env = os.environ if environ is None else environ
    args = list(sys.argv[1:] if argv is None else argv)
    extra = env.get("COMMANDLINE_ARGS", "")
    if extra.strip():
        args += split_commandline_args(extra)
    parser = parser or build_parser()
    ns = CmdOpts()
    if env.get("IGNORE_CMD_ARGS_ERRORS"):
        ns, unknown = parser.parse_known_args(args, namespace=ns)
        if unknown and warn:
            log.warning("ignoring unknown arguments because IGNORE_CMD_ARGS_ERRORS is set: %s", " ".join(unknown))
    else:
        ns = parser.parse_args(args, namespace=ns)
    problem = remote_access_error(ns) if check_access else None
    if problem:
        parser.error(problem)
    bad_login = credentials_error(ns) if check_access else None
    if bad_login:  # one line, exit status 2 like any argparse error; never a traceback, never the password
        parser.exit(2, f"{parser.prog}: error: {bad_login}\n")
    if warn:
        for flag in unimplemented_flags_used(ns):
            suffix = " yet" if FLAG_STATUS.get(flag) == NOT_YET_EFFECTIVE else ""
            log.warning("flag %s is accepted for A1111 compatibility but has no effect here%s", flag, suffix)
    return ns


def _given_flags(ns: argparse.Namespace) -> set[str]:
    if isinstance(ns, CmdOpts):
        return set(ns.given)
    # A plain Namespace (parsed elsewhere): fall back to "differs from the default".
    defaults = vars(build_parser().parse_args([]))
    return {flag for flag in FLAG_STATUS
            if (dest := flag.lstrip("-").replace("-", "_")) in vars(ns) and getattr(ns, dest) != defaults.get(dest)}


def unimplemented_flags_used(ns: argparse.Namespace) -> list[str]:
    """Flags given that do nothing here (yet), sorted: 'no effect' and 'not yet effective' ones."""
    if not FLAG_STATUS:
        build_parser()
    return sorted(f for f in _given_flags(ns) if FLAG_STATUS.get(f) in (NO_EFFECT, NOT_YET_EFFECTIVE))


def secret_free_flags(ns: argparse.Namespace) -> dict[str, Any]:
    """``vars(ns)`` for /sdapi/v1/cmd-flags with passwords, auth strings and tokens replaced (A1111 issue 17411).

    Unset values stay as they are (None, "", []), so clients can still tell "not set" from "set".
    """
    out: dict[str, Any] = {}
    for key, value in vars(ns).items():
        if key.startswith("_"):
            continue
        secret = _SECRET_RE.search(key) and not key.endswith(_NOT_SECRET_SUFFIXES)
        out[key] = REDACTED if secret and value not in (None, "", [], {}, False) else value
    return out


# --- Derived values webui.py needs ---------------------------------------------------------------------------------


def server_name(ns: argparse.Namespace) -> str:
    """Address to bind: --server-name, else 0.0.0.0 with --listen, else loopback only."""
    if getattr(ns, "server_name", None):
        return str(ns.server_name)
    return "0.0.0.0" if getattr(ns, "listen", False) else "127.0.0.1"


def server_port(ns: argparse.Namespace) -> int:
    """--port, else 7860 (7861 with --nowebui). ``ns.port is None`` tells the caller it may fall back to a free port."""
    if getattr(ns, "port", None) is not None:
        return int(ns.port)
    return DEFAULT_API_ONLY_PORT if getattr(ns, "nowebui", False) else DEFAULT_PORT


def _lan_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses, as far as its own name resolves (best effort, no traffic)."""
    import socket

    try:
        found = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return []
    addresses = {str(info[4][0]) for info in found}
    return sorted(a for a in addresses if not ipaddress.ip_address(a).is_loopback)


def listen_urls(host: str, port: int, subpath: str = "") -> list[str]:
    """The URLs to log for the real bind address: ``http://0.0.0.0:7860/`` with --listen (so nobody mistakes it
    for loopback only), then the addresses other machines can use."""
    tail = subpath.strip("/") + "/" if subpath and subpath.strip("/") else ""

    def url(address: str) -> str:
        return f"http://{'[' + address + ']' if ':' in address else address}:{port}/{tail}"

    urls = [url(host)]
    if host in ("0.0.0.0", "::"):
        urls += [url(address) for address in _lan_addresses()]
    return urls


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: assume it resolves to something reachable from outside


def network_exposed(ns: argparse.Namespace) -> bool:
    return not _is_loopback(server_name(ns))


def auth_configured(ns: argparse.Namespace) -> bool:
    return any(getattr(ns, k, None) for k in ("gradio_auth", "gradio_auth_path", "api_auth"))


def admin_refusal(ns: argparse.Namespace) -> str | None:
    """Why admin actions (extension install/update, folder and filename settings, server stop/restart/kill, model
    downloads) are off, or None: on a network-exposed server without any login (``--insecure-no-auth``)
    everyone who can reach it would get them."""
    if network_exposed(ns) and not auth_configured(ns):
        return ("disabled: this server is reachable from the network without a login (--insecure-no-auth); "
                "start it with --gradio-auth or --api-auth to use this")
    return None


def folder_refusal(ns: argparse.Namespace, data_dir: str | os.PathLike[str],
                   path: str | os.PathLike[str]) -> str | None:
    """Why a folder (or a file in one) that a page or a request names may not be read or written, or None.

    The rule for every folder field (img2img batch input/output/mask/PNG info, Extras batch input/output): off
    with --hide-ui-dir-config; on a network-exposed server without a login (where folder settings are off too)
    only folders inside the data folder, symlinks resolved; otherwise (loopback, or a login) any folder."""
    from modules import filenames

    if getattr(ns, "hide_ui_dir_config", False):
        return "batch directories are disabled (--hide-ui-dir-config)"
    refused = admin_refusal(ns)
    if refused and not filenames.inside_any(path, [data_dir]):
        return f"{path} is outside the data folder {data_dir}; folders elsewhere are {refused}"
    return None


def file_allowed(ns: argparse.Namespace, data_dir: str | os.PathLike[str]) -> Callable[[Path], bool]:
    """``folder_refusal`` as a test for each file found in an allowed folder (a symlink in it may point out)."""
    return lambda path: folder_refusal(ns, data_dir, path) is None


def checked_folder(ns: argparse.Namespace, data_dir: str | os.PathLike[str], field: str,
                   text: str | None) -> Path | None:
    """The folder a field names (``~`` expanded, relative to the data folder), None when the field is empty;
    ``FieldError`` naming the field when ``folder_refusal`` says no, before anything is read or written."""
    from modules.errors import FieldError

    if not text or not str(text).strip():
        return None
    folder = Path(str(text).strip()).expanduser()
    folder = folder if folder.is_absolute() else Path(data_dir) / folder
    problem = folder_refusal(ns, data_dir, folder)
    if problem:
        raise FieldError(field, problem)
    return folder


def _login_spec_error(flag: str, spec: str) -> str | None:
    """Why ``spec`` (``user:pass[,user2:pass2]``) is not a usable login list; a non-empty spec must give a login,
    or the server would count as protected (``auth_configured``) while letting everyone in."""
    from modules.api.auth import parse_credentials  # pure: no fastapi

    try:
        logins = parse_credentials(spec)
    except ValueError as err:
        return f"{flag}: {err}"
    return f"{flag}: no login given" if spec and not logins else None


def _auth_file_error(path_text: str) -> str | None:
    path = Path(path_text).expanduser()
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        return f"--gradio-auth-path: cannot read {path} ({reason})"
    for number, line in enumerate(lines, start=1):
        problem = _login_spec_error(f"--gradio-auth-path {path} line {number}", line) if line else None
        if problem:
            return problem
    return None if any(lines) else f"--gradio-auth-path: {path} has no login in it"


def credentials_error(ns: argparse.Namespace) -> str | None:
    """Why --api-auth, --gradio-auth or --gradio-auth-path cannot be used (malformed, empty password, missing or
    empty file), or None; the message names the flag, never a password."""
    for flag, key in (("--api-auth", "api_auth"), ("--gradio-auth", "gradio_auth")):
        problem = _login_spec_error(flag, getattr(ns, key, None) or "")
        if problem:
            return problem
    auth_path = getattr(ns, "gradio_auth_path", None)
    return _auth_file_error(auth_path) if auth_path else None


def remote_access_error(ns: argparse.Namespace) -> str | None:
    """Why this server must not start as configured, or None. Loopback-only is the secure default."""
    if network_exposed(ns) and not auth_configured(ns) and not getattr(ns, "insecure_no_auth", False):
        return (f"serving on {server_name(ns)} exposes the UI and API to the network with no login: add "
                "--gradio-auth user:password (or --gradio-auth-path / --api-auth), or pass --insecure-no-auth "
                "if everyone who can reach this machine may use it")
    return None


build_parser()  # fill FLAG_STATUS at import so callers can read it without parsing
