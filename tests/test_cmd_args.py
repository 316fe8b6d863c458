"""modules.cmd_args: A1111 flag names, defaults and arity; COMMANDLINE_ARGS; warnings; redaction; remote access."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from modules import cmd_args
from modules.cmd_args import (
    FLAG_STATUS,
    IMPLEMENTED,
    LAUNCHER,
    NO_EFFECT,
    NOT_YET_EFFECTIVE,
    build_parser,
    parse_args,
    secret_free_flags,
    server_name,
    server_port,
    split_commandline_args,
    unimplemented_flags_used,
)

ROOT = Path(__file__).resolve().parent.parent


def parse(*argv: str, env: dict[str, str] | None = None) -> cmd_args.CmdOpts:
    return parse_args(list(argv), env or {}, warn=False)


def test_defaults_match_a1111() -> None:
    ns = parse()
    assert ns.port is None and server_port(ns) == 7860
    assert server_name(ns) == "127.0.0.1"
    assert ns.precision == "autocast"
    assert ns.timeout_keep_alive == 30
    assert ns.use_cpu == [] and ns.styles_file == []
    assert ns.listen is False and ns.api is False and ns.nowebui is False
    assert ns.data_dir is None and ns.ckpt is None  # modules.paths decides the real folders
    assert ns.theme is None


def test_port_defaults() -> None:
    assert server_port(parse("--nowebui")) == 7861
    assert server_port(parse("--nowebui", "--port", "9000")) == 9000
    assert server_port(parse("--port", "7860")) == 7860
    assert parse("--port", "7860").port == 7860  # explicit: caller must not fall back to another port


def test_commandline_args_appended_after_argv() -> None:
    ns = parse("--port", "1000", env={"COMMANDLINE_ARGS": '--port 2000 --ckpt-dir "/my models" --api'})
    assert ns.port == 2000  # appended after argv, so it wins, as in A1111
    assert ns.ckpt_dir == "/my models"
    assert ns.api is True
    assert {"--port", "--ckpt-dir", "--api"} <= ns.given


def test_commandline_args_empty_or_blank() -> None:
    assert parse(env={"COMMANDLINE_ARGS": "   "}).given == set()


def test_commandline_args_from_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMANDLINE_ARGS", "--no-half")
    assert parse_args([], warn=False).no_half is True


def test_windows_paths_keep_backslashes() -> None:
    assert split_commandline_args(r'--ckpt-dir C:\models --vae-dir "D:\my vae"', windows=True) == [
        "--ckpt-dir", r"C:\models", "--vae-dir", r"D:\my vae"]
    assert split_commandline_args("--a 'b c'", windows=False) == ["--a", "b c"]


def test_a1111_flags_accepted_with_one_warning_each(caplog: pytest.LogCaptureFixture) -> None:
    argv = ["--xformers", "--opt-sdp-attention", "--share", "--ngrok", "TOKEN", "--skip-torch-cuda-test",
            "--sub-quad-q-chunk-size", "512", "--hypernetwork-dir", "h", "--gradio-allowed-path", "/a", "--gradio-allowed-path", "/b",
            "--upcast-sampling", "--max-batch-count", "8", "--deepdanbooru", "--ngrok-options", '{"x": 1}']
    with caplog.at_level(logging.WARNING, logger="modules.cmd_args"):
        ns = parse_args(argv, {})
    assert ns.xformers and ns.share and ns.ngrok == "TOKEN" and ns.sub_quad_q_chunk_size == 512
    assert ns.gradio_allowed_path == ["/a", "/b"] and ns.max_batch_count == 8
    used = unimplemented_flags_used(ns)
    assert used == sorted(["--xformers", "--opt-sdp-attention", "--share", "--ngrok", "--skip-torch-cuda-test",
                           "--sub-quad-q-chunk-size", "--hypernetwork-dir", "--gradio-allowed-path", "--upcast-sampling",
                           "--max-batch-count", "--deepdanbooru", "--ngrok-options"])
    msgs = [r.getMessage() for r in caplog.records]
    assert "flag --xformers is accepted for A1111 compatibility but has no effect here" in msgs
    assert "flag --hypernetwork-dir is accepted for A1111 compatibility but has no effect here yet" in msgs
    assert len(msgs) == len(used)  # one line per flag, even when repeated


def test_implemented_and_launcher_flags_do_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="modules.cmd_args"):
        ns = parse_args(["--api", "--no-half", "--skip-install", "--exit", "-f", "--reinstall-torch",
                         "--use-cpu", "SD", "GFPGAN", "--precision", "full", "--theme", "dark"], {})
    assert caplog.records == []
    assert unimplemented_flags_used(ns) == []
    assert ns.use_cpu == ["sd", "gfpgan"] and ns.skip_install and ns.exit and ns.f


def test_a1111_value_flags_keep_their_arity() -> None:
    # A value-taking no-op must consume its value, else the value would be parsed as a stray argument.
    ns = parse("--device-id", "1", "--loglevel", "DEBUG", "--tls-keyfile", "k.pem", "--config", "v1.yaml", "--api")
    assert ns.device_id == "1" and ns.loglevel == "DEBUG" and ns.tls_keyfile == "k.pem" and ns.api is True
    assert parse("--disable-tls-verify").disable_tls_verify is False  # A1111: store_false, default None
    assert parse().disable_tls_verify is None
    assert parse().gradio_queue is True


@pytest.mark.parametrize("argv", [["--no-such-flag"], ["--port", "abc"], ["--port", "70000"], ["--precision", "double"],
                                  ["--use-cpu", "gpu"], ["--theme", "blue"], ["stray"]])
def test_bad_flags_rejected(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_unknown_flag_in_commandline_args_rejected() -> None:
    with pytest.raises(SystemExit):
        parse(env={"COMMANDLINE_ARGS": "--api --bogus"})


def test_ignore_cmd_args_errors(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="modules.cmd_args"):
        ns = parse_args(["--api", "--bogus"], {"IGNORE_CMD_ARGS_ERRORS": "1"})
    assert ns.api is True
    assert any("--bogus" in r.getMessage() for r in caplog.records)


def test_every_contract_flag_is_known() -> None:
    # Section 10 of the A1111 contract, plus flags A1111 v1.10.1 defines that the section lists by family.
    contract = """--listen --port --server-name --share --ngrok --ngrok-options --subpath --tls-keyfile --tls-certfile
    --disable-tls-verify --cors-allow-origins --cors-allow-origins-regex --autolaunch --gradio-auth --gradio-auth-path
    --gradio-debug --gradio-allowed-path --no-gradio-queue --timeout-keep-alive --theme --api --api-auth --api-log
    --nowebui --api-server-stop --skip-load-model-at-start --data-dir --models-dir --ckpt --ckpt-dir --vae-dir
    --vae-path --config --embeddings-dir --hypernetwork-dir --localizations-dir --textual-inversion-templates-dir
    --styles-file --ui-settings-file --ui-config-file --lora-dir --lyco-dir-backcompat --gfpgan-models-path
    --codeformer-models-path --esrgan-models-path --realesrgan-models-path --dat-models-path --bsrgan-models-path
    --ldsr-models-path --swinir-models-path --scunet-models-path --clip-models-path --no-half --no-half-vae
    --precision --upcast-sampling --medvram --medvram-sdxl --lowvram --lowram --use-cpu --use-ipex --device-id
    --opt-channelslast --disable-model-loading-ram-optimization --xformers --force-enable-xformers
    --xformers-flash-attention --opt-sdp-attention --opt-sdp-no-mem-attention --opt-split-attention
    --opt-split-attention-v1 --opt-split-attention-invokeai --opt-sub-quad-attention --sub-quad-q-chunk-size
    --sub-quad-kv-chunk-size --sub-quad-chunk-threshold --disable-opt-split-attention
    --enable-insecure-extension-access --disable-safe-unpickle --allow-code --hide-ui-dir-config --freeze-settings
    --freeze-settings-in-sections --freeze-specific-settings --disable-all-extensions --disable-extra-extensions
    --administrator --use-textbox-seed --disable-console-progressbars --ui-debug-mode --no-hashing
    --no-download-sd-model --do-not-download-clip --disable-nan-check --no-prompt-history
    --unix-filenames-sanitization --filenames-max-length --skip-torch-cuda-test --skip-python-version-check
    --skip-prepare-environment --skip-install --reinstall-torch --reinstall-xformers --update-check
    --update-all-extensions --test-server --log-startup --dump-sysinfo --loglevel --exit -f --max-batch-count
    --always-batch-cond-uncond --unload-gfpgan --deepdanbooru --show-negative-prompt --gradio-img2img-tool
    --gradio-inpaint-tool --gradio-queue --add-stop-route --ngrok-region --enable-console-prompts""".split()
    missing = [f for f in contract if f not in FLAG_STATUS]
    assert missing == []
    assert set(FLAG_STATUS.values()) == {IMPLEMENTED, NOT_YET_EFFECTIVE, LAUNCHER, NO_EFFECT}
    assert FLAG_STATUS["--insecure-no-auth"] == IMPLEMENTED
    assert {f for f, s in FLAG_STATUS.items() if s == NOT_YET_EFFECTIVE} == {"--hypernetwork-dir"}
    assert {"--api-server-stop", "--ui-config-file", "--esrgan-models-path", "--medvram", "--lowvram",
            "--medvram-sdxl", "--opt-channelslast", "--compile"} <= {
        f for f, s in FLAG_STATUS.items() if s == IMPLEMENTED}
    assert {f for f, s in FLAG_STATUS.items() if s == LAUNCHER} == {"--skip-install", "--reinstall-torch", "--exit", "-f"}


def test_secret_redaction() -> None:
    ns = parse_args(["--api-auth", "u:secret1", "--gradio-auth", "a:secret2", "--ngrok", "secret3",
                     "--ngrok-options", '{"basic_auth": "u:secret4"}', "--gradio-auth-path", "/etc/auth.txt",
                     "--port", "7000"], {}, warn=False, check_access=False)  # /etc/auth.txt need not exist here
    flags = secret_free_flags(ns)
    text = json.dumps(flags)  # must be JSON-serialisable for /sdapi/v1/cmd-flags
    for s in ("secret1", "secret2", "secret3", "secret4"):
        assert s not in text
    assert flags["api_auth"] == flags["gradio_auth"] == flags["ngrok"] == "<redacted>"
    assert flags["gradio_auth_path"] == "/etc/auth.txt"  # a path, not the secret
    assert flags["port"] == 7000
    assert set(flags) == set(vars(ns))
    unset = secret_free_flags(parse())
    assert unset["api_auth"] is None and unset["gradio_auth"] is None  # "not set" stays visible


def test_listen_requires_auth_or_explicit_opt_out(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--listen")
    assert "--insecure-no-auth" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("--server-name", "192.168.1.5")
    assert server_name(parse("--listen", "--insecure-no-auth")) == "0.0.0.0"
    assert server_name(parse("--listen", "--gradio-auth", "u:p")) == "0.0.0.0"
    assert server_name(parse("--listen", "--api-auth", "u:p", "--nowebui")) == "0.0.0.0"
    assert server_name(parse("--server-name", "localhost")) == "localhost"  # loopback needs no auth
    assert server_name(parse("--server-name", "::1")) == "::1"


def test_given_flags_fallback_for_plain_namespace() -> None:
    ns = build_parser().parse_args(["--xformers", "--api"])  # parsed without CmdOpts: compares with defaults
    assert unimplemented_flags_used(ns) == ["--xformers"]


def test_help_lists_groups() -> None:
    text = build_parser().format_help()
    for title in ("network and server", "API", "paths", "precision and devices", "launcher",
                  "accepted for A1111 compatibility, no effect here"):
        assert title in text
    assert "--xformers" in text and "--insecure-no-auth" in text and "not yet effective" in " ".join(text.split())


def test_module_is_pure() -> None:
    code = "import sys, modules.cmd_args; print(any(m in sys.modules for m in ('torch', 'gradio', 'fastapi')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_flags_marked_implemented_are_read_by_the_program() -> None:
    """A flag that --help calls implemented must be read somewhere outside the parser (``args.x`` or ``"x"``)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sources = [root / "webui.py", *(p for p in (root / "modules").rglob("*.py") if p.name != "cmd_args.py")]
    code = "\n".join(p.read_text(encoding="utf-8") for p in sources)
    # cmd_args.py's own helpers (server_name, remote_access_error) act on --listen and friends for webui.py.
    code += (root / "modules" / "cmd_args.py").read_text(encoding="utf-8").split("# --- Derived values")[1]
    unread = []
    for flag, status in FLAG_STATUS.items():
        if status != IMPLEMENTED:
            continue
        dest = flag.lstrip("-").replace("-", "_")
        if not re.search(rf"\.{dest}\b|[\"']{dest}[\"']", code):
            unread.append(flag)
    assert unread == []
