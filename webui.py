"""Entry point: flags -> settings -> FastAPI app with /sdapi/v1 and the Gradio UI on one port -> uvicorn.

The server answers HTTP before any model is loaded: the first checkpoint loads in the background on the job queue.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub: every config ships with us
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DISABLE_TELEMETRY", "1")

log = logging.getLogger("webui")

PORT_FALLBACK_TRIES = 100  # like gradio: without --port, the next free port after 7860


def ui_credentials(args: Any) -> list[tuple[str, str]]:
    """Logins for the UI: ``--gradio-auth`` plus every non-empty line of ``--gradio-auth-path`` (same format)."""
    from modules.api.auth import parse_credentials

    specs = [args.gradio_auth or ""]
    if args.gradio_auth_path:
        text = Path(args.gradio_auth_path).expanduser().read_text(encoding="utf-8")
        specs += [line.strip() for line in text.splitlines() if line.strip()]
    creds: dict[str, str] = {}
    for spec in specs:
        creds.update(parse_credentials(spec))
    return list(creds.items())


def all_credentials(args: Any) -> dict[str, str]:
    """The one set of logins for everything (UI, API, files, extension routes): the UI's plus --api-auth."""
    from modules.api.auth import parse_credentials

    creds = dict(ui_credentials(args))
    creds.update(parse_credentials(getattr(args, "api_auth", None)))
    return creds


def _add_http_middleware(app: Any, args: Any) -> None:
    """CORS (--cors-allow-origins[-regex]), the X-Process-Time header A1111 sends, and --api-log."""
    from fastapi.middleware.cors import CORSMiddleware

    origins = [o for o in (args.cors_allow_origins or "").split(",") if o]
    if origins or args.cors_allow_origins_regex:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_origin_regex=args.cors_allow_origins_regex,
                           allow_methods=["*"], allow_headers=["*"], allow_credentials=True)
    api_log = logging.getLogger("webui.api")

    @app.middleware("http")
    async def _timing(request: Any, call_next: Any) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        response.headers["X-Process-Time"] = f"{elapsed:.4f}"
        if args.api_log and request.url.path.startswith("/sdapi/"):
            api_log.info("%s %s %s %.3fs", request.method, request.url.path, response.status_code, elapsed)
        return response


def _add_login_check(app: Any, guard: Any) -> None:
    """A1111's ``/login_check`` (gradio 3's, at the root; gradio 6 moved its own under /gradio_api): ``null`` when no
    login is set or the caller is logged in (Basic credentials or the UI's cookie), else 401 "Not authenticated".
    Added before gradio is mounted at "/", which would otherwise take the path."""
    from fastapi import HTTPException, Request

    def login_check(request: Request) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if not guard.authenticated(headers):
            raise HTTPException(status_code=401, detail="Not authenticated")

    login_check.__annotations__ = {"request": Request, "return": None}  # resolved here: the import is local
    for path in ("/login_check", "/login_check/"):
        app.add_api_route(path, login_check, methods=["GET"], include_in_schema=False)


def create_app(args: Any, extensions: list[Any] | None = None) -> Any:  # -> FastAPI
    """Build the whole application for ``args`` (used by main() and by the tests' real servers). ``extensions``
    are the ones main() already discovered (and ran preload.py of); otherwise they are discovered here."""
    from fastapi import FastAPI

    from modules import browser_files, script_callbacks, shared
    from modules import extensions as ext_mod
    from modules.api.routes import build_lora_router, build_router, install_error_handlers
    from modules.runtime import build_runtime

    rt = build_runtime(args)
    browser_files.use_private_upload_cache()  # before gradio caches anything
    if extensions is None:
        extensions = ext_mod.discover(rt.paths.data_dir, rt.options.as_dict(), args)
    rt.extensions = extensions
    ext_mod.run_installers(extensions, rt.paths.data_dir, skip=bool(getattr(args, "skip_install", False)))
    shared.bind(rt)
    load_scripts(rt, extensions)
    script_callbacks.call("ui_settings")  # extension options exist before Settings and config.json checks
    app = FastAPI(title="Stable Diffusion web UI", docs_url="/docs", redoc_url=None)
    app.state.runtime = rt
    install_error_handlers(app)
    _add_http_middleware(app, args)
    from modules.api.event_files import GradioEventGuard
    from modules.api.guard import GuardPolicy, RequestGuard, bind_to_ui

    credentials = all_credentials(args)
    guard = GuardPolicy.from_args(args, credentials)
    # Added before the guard, so inside it (the last added middleware is the outermost): event bodies are read
    # only once the host, origin, login and size checks passed.
    app.add_middleware(GradioEventGuard,
                       roots=lambda: browser_files.allowed_roots(rt.options.as_dict(), rt.paths.data_dir),
                       upload_quota=int(args.max_upload_mb_per_hour * 1024 * 1024))
    app.add_middleware(RequestGuard, policy=guard)  # outermost: refused requests never reach CORS or the app
    if args.api or args.nowebui:  # as in A1111, /sdapi/v1 is served only when asked for
        from modules.api.jobs_routes import build_jobs_router

        app.include_router(build_router(rt))
        app.include_router(build_jobs_router(rt))  # ours: the async job API beside it
    app.include_router(build_lora_router(rt))  # A1111 has these two even without --api
    from modules.api.controlnet_routes import build_controlnet_router

    app.include_router(build_controlnet_router(rt))  # as sd-webui-controlnet's, on the app itself
    from modules.api.extra_networks_routes import build_extra_networks_router

    app.include_router(build_extra_networks_router(rt))  # A1111's /sd_extra_networks/*, with or without --api

    @app.get("/internal/ping", include_in_schema=False)
    def ping() -> dict:
        return {}

    from modules import progress

    progress.setup_progress_api(app)  # A1111's POST /internal/progress: the page's requestProgress() polls it

    @app.get("/internal/localization", include_in_schema=False)
    def page_localization() -> dict:
        """The chosen localization's text map, read by the page on load (a setting change applies on reload)."""
        from modules import localization

        return localization.load(rt.options.get("localization"), localization_dirs(rt))

    from modules.ui.extension_assets import add_asset_route, page_head

    add_asset_route(app, rt)
    demo = None
    if not args.nowebui:
        import gradio as gr

        _add_login_check(app, guard)

        from modules.ui.app import CSS, build_ui, page_js

        from modules.ui.component_hooks import component_callbacks

        script_callbacks.call("before_ui")
        with component_callbacks():
            demo = build_ui(rt)
        shared.demo = demo  # A1111's shared.demo, read by extensions in app_started
        app = gr.mount_gradio_app(app, demo, path="/", auth=list(credentials.items()) or None, css=CSS,
                                  js=page_js(args.theme), head=page_head(rt),
                                  allowed_paths=[str(rt.paths.outputs_dir)])
    script_callbacks.call("app_started", demo, app)  # how A1111 extensions add their HTTP routes
    app.router.on_shutdown.append(lambda: script_callbacks.call("script_unloaded"))
    _mounts_last(app)
    bind_to_ui(guard, app)
    return app


def load_scripts(rt: Any, extensions: list[Any]) -> None:
    """Import the built-in and the active extensions' scripts, and give each tab its ScriptRunner."""
    from modules import extensions as ext_mod
    from modules import scripts

    ext_mod.load_scripts(extensions)
    from modules.script_registry import ScriptRegistry

    txt2img, img2img = scripts.build_runners()
    rt.scripts = ScriptRegistry.of({"txt2img": txt2img, "img2img": img2img, "extras": scripts.scripts_postproc})


def _mounts_last(app: Any) -> None:
    """Routes extensions add after the UI is mounted at "/" must not be shadowed by that mount: keep mounts last."""
    from starlette.routing import Mount

    routes = app.router.routes
    routes[:] = [r for r in routes if not isinstance(r, Mount)] + [r for r in routes if isinstance(r, Mount)]


def localization_dirs(rt: Any) -> list[Any]:
    """Core and --localizations-dir files, then those of the active extensions (A1111's merge order)."""
    active = {e.path / "localizations" for e in rt.extensions if e.enabled}
    return [d for d in rt.paths.localization_dirs() if d.parent.parent != rt.paths.extensions_dir or d in active]


def start_background_load(app: Any) -> None:
    """Queue the first checkpoint load: ``--ckpt`` when given (A1111 makes it the active checkpoint for the
    session), else the configured ``sd_model_checkpoint``, else the first one found."""
    rt = app.state.runtime if hasattr(app, "state") else None
    if rt is None or rt.args.skip_load_model_at_start:
        return
    if not rt.registry.list():
        log.warning("No checkpoint found in %s. The UI explains how to add one.", rt.paths.model_dir("checkpoints"))
        return
    explicit = rt.paths.explicit_ckpt
    if explicit is not None:
        info = next((c for c in rt.registry.list() if c.path == explicit), None)
        if info is not None:
            rt.submit_load(info.title)
            return
        log.warning("--ckpt %s was not found; loading the configured checkpoint instead.", explicit)
    try:
        rt.submit_load(rt.options.get("sd_model_checkpoint"))
    except Exception as err:  # a missing configured checkpoint falls back to the first available
        log.warning("%s; loading the first available checkpoint instead.", err)
        rt.submit_load(None)


def _port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(host: str, wanted: int, explicit: bool) -> int:
    """An explicit --port is used as given (uvicorn reports a clash); the default falls forward to a free port."""
    if explicit:
        return wanted
    for port in range(wanted, wanted + PORT_FALLBACK_TRIES):
        if _port_is_free(host, port):
            if port != wanted:
                log.warning("Port %d is in use; serving on %d instead.", wanted, port)
            return port
    raise SystemExit(f"no free port between {wanted} and {wanted + PORT_FALLBACK_TRIES - 1}; pass --port")


class StripSubpath:
    """ASGI wrapper for ``--subpath``: requests work with the prefix (a proxy that keeps it, or a direct visit) and
    without it (a proxy that strips it); uvicorn's ``root_path`` makes generated URLs carry the prefix."""

    def __init__(self, app: Any, subpath: str) -> None:
        self.app = app
        self.prefix = "/" + subpath.strip("/")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") in ("http", "websocket"):
            path = scope.get("path", "")
            if path == self.prefix or path.startswith(self.prefix + "/"):
                scope = {**scope, "path": path[len(self.prefix):] or "/"}
        await self.app(scope, receive, send)


def discover_with_preload(argv: Sequence[str] | None) -> tuple[list[Any], Any]:
    """The extensions, found before the command line is parsed for real, so their ``preload(parser)`` can add
    flags (A1111): a lenient first parse only locates the data folder and the disable flags."""
    from modules import extensions as ext_mod
    from modules.cmd_args import build_parser, parse_args
    from modules.options import Options
    from modules.paths import Paths

    parser = build_parser()
    args = list(sys.argv[1:] if argv is None else argv)
    without_help = [a for a in args if a not in ("-h", "--help")]  # --help is answered by the full parser
    first = parse_args(without_help, environ={**os.environ, "IGNORE_CMD_ARGS_ERRORS": "1"}, parser=build_parser(),
                       warn=False, check_access=False)
    paths = Paths.from_args(first)
    options = Options(paths.config_file)
    try:
        options.load(at_start=False)  # only a look: the real start quarantines a broken file and says so on the page
    except Exception:  # noqa: BLE001 - a broken config is handled (quarantined) by the real start
        pass
    found = ext_mod.discover(paths.data_dir, options.as_dict(), first)
    ext_mod.run_preloads(found, parser)
    return found, parser


def main(argv: Sequence[str] | None = None) -> int:
    from modules.cmd_args import parse_args, server_name, server_port

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    extensions, parser = discover_with_preload(argv)
    args = parse_args(argv, parser=parser)  # refuses a network-exposed server without auth; warns about no-effect flags
    host = server_name(args)
    port = choose_port(host, server_port(args), explicit=args.port is not None)
    app = create_app(args, extensions)
    runtime = app.state.runtime
    start_background_load(app)

    from modules import shutdown  # uvicorn, with SIGTERM/SIGINT ending the process within seconds

    from modules.cmd_args import listen_urls

    bound, *lan = listen_urls(host, port, args.subpath or "")
    log.info("Running on %s", bound)  # the real bind address: 0.0.0.0 with --listen, never a reassuring 127.0.0.1
    for other in lan:
        log.info("On the network: %s", other)
    # the browser opened by --autolaunch goes to this machine itself
    url = listen_urls("127.0.0.1" if host in ("0.0.0.0", "::") else host, port, args.subpath or "")[0]
    if args.autolaunch:
        import webbrowser

        threading.Timer(2.0, webbrowser.open, args=(url,)).start()
    root_path = ""
    if args.subpath and args.subpath.strip("/"):
        root_path = "/" + args.subpath.strip("/")
        app = StripSubpath(app, root_path)
    shutdown.serve(app, runtime.jobs, host=host, port=port, root_path=root_path,
                   timeout_keep_alive=args.timeout_keep_alive, log_level="warning")
    if runtime.restart_requested:  # /sdapi/v1/server-restart: the same command again
        from modules import script_callbacks

        script_callbacks.call("before_reload")  # A1111 extensions stop their threads here
        log.info("Restarting")
        os.execv(sys.executable, [sys.executable, *sys.argv])
    return 0


if __name__ == "__main__":
    sys.exit(main())
