"""Entry point: flags -> settings -> FastAPI app with /sdapi/v1 and the Gradio UI on one port -> uvicorn.

The server answers HTTP before any model is loaded: the first checkpoint loads in the background on the job queue.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub: every config ships with us
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DISABLE_TELEMETRY", "1")

log = logging.getLogger("webui")


def create_app(args):  # -> FastAPI
    """Build the whole application for ``args`` (used by main() and by the tests' real servers)."""
    from fastapi import FastAPI

    from modules.api.routes import build_router, install_error_handlers
    from modules.runtime import build_runtime

    rt = build_runtime(args)
    app = FastAPI(title="Stable Diffusion web UI", docs_url="/docs", redoc_url=None)
    app.state.runtime = rt
    install_error_handlers(app)
    app.include_router(build_router(rt))

    @app.get("/internal/ping", include_in_schema=False)
    def ping() -> dict:
        return {}

    if not args.nowebui:
        import gradio as gr

        from modules.ui.app import CSS, build_ui

        demo = build_ui(rt)
        auth = None
        if args.gradio_auth:
            from modules.api.auth import parse_credentials

            auth = list(parse_credentials(args.gradio_auth).items())
        theme_js = None
        if args.theme:
            theme_js = ("() => { const url = new URL(window.location); if (url.searchParams.get('__theme') !== "
                        f"'{args.theme}') {{ url.searchParams.set('__theme', '{args.theme}'); "
                        "window.location.replace(url); } }")
        app = gr.mount_gradio_app(app, demo, path="/", auth=auth, css=CSS, js=theme_js,
                                  allowed_paths=[str(rt.paths.outputs_dir)])
    return app


def start_background_load(app) -> None:
    rt = app.state.runtime if hasattr(app, "state") else None
    if rt is None or rt.args.skip_load_model_at_start:
        return
    if not rt.registry.list():
        log.warning("No checkpoint found in %s. The UI explains how to add one.", rt.paths.model_dir("checkpoints"))
        return
    try:
        rt.submit_load(rt.options.get("sd_model_checkpoint"))
    except Exception as err:  # a missing configured checkpoint falls back to the first available
        log.warning("%s; loading the first available checkpoint instead.", err)
        rt.submit_load(None)


def main(argv: Sequence[str] | None = None) -> int:
    from modules.cmd_args import parse_args, unimplemented_flags_used

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for flag in unimplemented_flags_used(args):
        log.warning("flag %s is accepted for A1111 compatibility but has no effect here", flag)
    host = args.server_name or ("0.0.0.0" if args.listen else "127.0.0.1")
    if host not in ("127.0.0.1", "localhost", "::1") and not (args.gradio_auth or args.api_auth) \
            and not args.insecure_no_auth:
        log.error("Refusing to listen on %s without --gradio-auth/--api-auth. Add credentials, or pass "
                  "--insecure-no-auth if this network is trusted.", host)
        return 2
    port = args.port or (7861 if args.nowebui else 7860)
    app = create_app(args)
    start_background_load(app)

    import uvicorn

    log.info("Running on http://%s:%d", "127.0.0.1" if host in ("0.0.0.0", "127.0.0.1") else host, port)
    uvicorn.run(app, host=host, port=port, timeout_keep_alive=args.timeout_keep_alive, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
