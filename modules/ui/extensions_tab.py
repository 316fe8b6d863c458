"""The Extensions tab, as A1111's: "Installed" (state, git remote/branch/version, problems; enable/disable; check
for updates and update through git; "Apply and restart UI", which saves ``disabled_extensions`` and restarts the
server on the same port) and "Install from URL" (an https git URL, cloned into ``extensions/`` and its install.py
run; refused on a network-exposed server without ``--enable-insecure-extension-access``).

The handlers are plain functions of the runtime (``install_extension``, ``check_updates``, ``update_extensions``)
so they are tested without a browser.
"""

from __future__ import annotations

import html
import logging
import os
import signal
import threading
from typing import Any

import gradio as gr

from modules import a1111_internals, extension_git, extension_index
from modules.runtime import Runtime
from modules.ui import common

log = logging.getLogger(__name__)


def problems(ext: Any) -> list[str]:
    """What went wrong for ``ext``: its install/preload/import errors, then its scripts' ui() and hook failures and
    its callbacks' (reported as "<extension>: ..."). A failure that comes down to A1111 internals we do not have
    (ldm, k-diffusion, ...) is the one line that says so, once, instead of its traceback."""
    from modules import script_callbacks, scripts

    prefix = f"{ext.name}: "
    found = list(ext.errors)
    found += [m[len(prefix):] for m in [*scripts.errors, *script_callbacks.errors] if m.startswith(prefix)]

    def key(message: str) -> str:  # one line per missing module, whichever scripts needed it
        return message.split(" (", 1)[0] if message.startswith(a1111_internals.NOT_HERE) else message

    out: list[str] = []
    for message in found:
        if not message.startswith(a1111_internals.NOT_HERE):
            message = a1111_internals.summary(message) or message
        if all(key(known) != key(message) for known in out):
            out.append(message)
    internals = [m for m in out if m.startswith(a1111_internals.NOT_HERE)]
    if internals and len(out) > len(internals):  # built on A1111's internals: that is the one thing to say
        others = len(out) - len(internals)
        internals[-1] += (f"; {others} other import error{'s' if others > 1 else ''} of its scripts "
                          f"({'are' if others > 1 else 'is'} in the server log)")
        return internals
    return out


def _problem_html(message: str) -> str:
    if message.startswith(a1111_internals.NOT_HERE):
        return f"<p class='error extension-needs-a1111'>{html.escape(message)}</p>"
    return f"<pre class='error'>{html.escape(message)}</pre>"


def extensions_table(rt: Runtime, updates: dict[str, str] | None = None) -> str:
    if not rt.extensions:
        return (f"<p class='comments'>{common.words('No extensions are installed. Put them in')} "
                f"<code>{html.escape(str(rt.paths.extensions_dir))}</code></p>")
    rows = []
    for ext in rt.extensions:
        state = "replaced (built in)" if ext.replaced_by else "enabled" if ext.enabled else "disabled"
        errors = "".join(_problem_html(e) for e in problems(ext))
        errors += "".join(f"<p class='comments'>{html.escape(n)}</p>" for n in getattr(ext, "notes", []))
        scripts = ", ".join(html.escape(s) for s in ext.loaded_scripts)
        info = ext.git()
        remote = html.escape(info.remote or "")
        status = html.escape((updates or {}).get(ext.name, ""))
        rows.append(f"<tr><td>{html.escape(ext.name)}</td><td>{common.words(state)}</td>"
                    f"<td>{'builtin' if ext.is_builtin else ''}</td><td>{remote}</td>"
                    f"<td>{html.escape(info.branch or '')}</td><td>{html.escape(info.version)}</td>"
                    f"<td>{html.escape(info.date_text())}</td><td>{status}</td><td>{scripts}</td><td>{errors}</td></tr>")
    head = "".join(f"<th>{common.words(h)}</th>" for h in
                   ("Extension", "State", "", "URL", "Branch", "Version", "Date", "Update", "Scripts", "Problems"))
    return f"<table id='extensions_table'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def available_table(index: extension_index.Index, hidden: list[str], order: str, search: str,
                    installed_urls: list[str]) -> str:
    """A1111's "Available" table: name (linked), tags, description and date added, and Install (or Installed)."""
    rows, hidden_count = extension_index.shown(index, hidden, order, search, installed_urls)
    body = []
    for entry, installed in rows:
        url = html.escape(entry.url, quote=True)
        tags = " ".join(f"<span class='extension-tag' title='{html.escape(index.tags.get(t, ''), quote=True)}'>"
                        f"{html.escape(t)}</span>" for t in entry.tags)
        action = (f"<button class='sd-index-install lg secondary gradio-button' disabled>"
                  f"{common.words('Installed')}</button>" if installed else
                  f"<button class='sd-index-install lg primary gradio-button' data-url='{url}' "
                  f"data-name='{html.escape(entry.name, quote=True)}'>{common.words('Install')}</button>")
        body.append(f"<tr><td><a href='{url}' target='_blank' rel='noopener noreferrer'>{html.escape(entry.name)}"
                    f"</a><br>{tags}</td><td>{html.escape(entry.description)}<p class='info'>"
                    f"{common.words('Added:')} {html.escape(entry.added)}</p></td><td>{action}</td></tr>")
    note = (f"<p class='comments'>{common.words('Extensions hidden by their tags:')} {hidden_count}</p>"
            if hidden_count else "")
    return (f"{note}<table id='available_extensions'><thead><tr><th>{common.words('Extension')}</th>"
            f"<th>{common.words('Description')}</th><th>{common.words('Action')}</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _message(text: str) -> str:
    return f"<p class='comments'>{html.escape(text)}</p>"


def install_extension(rt: Runtime, url: str, branch: str = "", dirname: str = "") -> str:
    """Clone, run install.py, list it; loading waits for "Apply and restart UI"."""
    from modules import extensions as ext_mod

    refused = extension_git.extension_access_error(rt.args)
    if refused:
        return common.error_html(refused)
    try:
        path = extension_git.install_from_url(url, rt.paths.extensions_dir, dirname or None, branch or None)
    except extension_git.ExtensionGitError as err:
        return common.error_html(str(err))
    ext = ext_mod.Extension(path.name, path)
    ext_mod.run_installers([ext], rt.paths.data_dir)
    rt.extensions.append(ext)
    log.info("installed extension %s from %s", path.name, url)
    problems = f" {ext.errors[0]}" if ext.errors else ""
    return _message(f"Installed into {path}. Use \"Apply and restart UI\" to load it.{problems}")


def check_updates(rt: Runtime) -> dict[str, str]:
    """Each git checkout's state against its remote (fetching it)."""
    refused = extension_git.extension_access_error(rt.args)
    out: dict[str, str] = {}
    for ext in rt.extensions:
        if not extension_git.is_checkout(ext.path):
            continue
        if refused:
            out[ext.name] = "disabled"
            continue
        try:
            out[ext.name] = extension_git.check_for_updates(ext.path).message
        except extension_git.ExtensionGitError as err:
            out[ext.name] = f"error: {err}"
    return out


def update_extensions(rt: Runtime, names: list[str] | None = None) -> dict[str, str]:
    """Fast-forward the chosen (or every) checkout that is behind; the new code loads after a restart."""
    refused = extension_git.extension_access_error(rt.args)
    if refused:
        return {ext.name: refused for ext in rt.extensions}
    out: dict[str, str] = {}
    for ext in rt.extensions:
        if (names is not None and ext.name not in names) or not extension_git.is_checkout(ext.path):
            continue
        before = ext.git().commit_hash
        try:
            after = extension_git.update(ext.path).commit_hash
        except extension_git.ExtensionGitError as err:
            out[ext.name] = f"error: {err}"
            continue
        ext.git(refresh=True)
        out[ext.name] = "updated, restart to load" if after != before else "latest"
    return out


def build_extensions_tab(rt: Runtime) -> Any:
    names = [e.name for e in rt.extensions]
    enabled = [e.name for e in rt.extensions if e.enabled]
    refused = extension_git.extension_access_error(rt.args)
    with gr.Tabs(elem_id="tabs_extensions"):
        with gr.Tab("Installed", id="installed"):
            with gr.Row():
                apply = gr.Button("Apply and restart UI", variant="primary", elem_id="extensions_apply",
                                  visible=bool(names))
                check = gr.Button("Check for updates", elem_id="extensions_check", visible=bool(names))
                update = gr.Button("Update", elem_id="extensions_update", visible=bool(names))
            chosen = gr.CheckboxGroup(names, value=enabled, label="Enabled extensions",
                                      elem_id="extensions_enabled", visible=bool(names))
            table = gr.HTML(extensions_table(rt), elem_id="extensions_installed_html")
            result = gr.HTML("", elem_id="extensions_result")
        with gr.Tab("Available", id="available"):
            if refused:
                gr.HTML(common.error_html(refused), elem_id="extensions_available_disabled")
            with gr.Row():
                load = gr.Button("Load from:", variant="primary", elem_id="extensions_available_load", scale=0,
                                 min_width=120, interactive=not refused)
                index_url = gr.Textbox(extension_index.DEFAULT_INDEX_URL, label="Extension index URL", show_label=False,
                                       max_lines=1, elem_id="extensions_index_url", scale=6,
                                       interactive=not refused)
            with gr.Row():
                hide_tags = gr.CheckboxGroup(["script", "ads", "localization", "installed"],
                                             value=list(extension_index.HIDDEN_BY_DEFAULT),
                                             label="Hide extensions with tags", elem_id="extensions_hide_tags")
                order = gr.Radio(list(extension_index.ORDERS), value="newest first", label="Order",
                                 elem_id="extensions_order")
            search_text = gr.Textbox(label="Search", max_lines=1, elem_id="extensions_search")
            available = gr.HTML("", elem_id="extensions_available_html")
            # the table's Install buttons (after the browser's confirm) put their URL here and press this
            chosen_url = gr.Textbox("", elem_id="extensions_index_install_url", elem_classes=["sd-hidden"])
            install_chosen = gr.Button("Install", elem_id="extensions_index_install", elem_classes=["sd-hidden"])
            available_result = gr.HTML("", elem_id="extensions_available_result")
            loaded = gr.State(None)
        with gr.Tab("Install from URL", id="install_from_url"):
            if refused:
                gr.HTML(common.error_html(refused), elem_id="extensions_install_disabled")
            url = gr.Textbox(label="URL for extension's git repository", elem_id="install_url",
                             interactive=not refused)
            branch = gr.Textbox(label="Specific branch name", placeholder="Leave empty for default main branch",
                                elem_id="install_branch", interactive=not refused)
            dirname = gr.Textbox(label="Local directory name", placeholder="Leave empty for auto",
                                 elem_id="install_dirname", interactive=not refused)
            trust = gr.Checkbox(False, label="I trust this repository: its code will run on this computer with my "
                                             "rights", elem_id="install_trust", interactive=not refused)
            install = gr.Button("Install", variant="primary", elem_id="install_button", interactive=not refused)
            install_result = gr.HTML("", elem_id="extension_install_result")

    def on_apply(selected: list[str]) -> str:
        all_names = [e.name for e in rt.extensions]
        disabled = [n for n in all_names if n not in (selected or [])]
        try:
            rt.options.apply({"disabled_extensions": disabled})
        except ValueError as err:
            return common.error_html(str(err))
        log.info("extensions changed (disabled: %s); restarting", ", ".join(disabled) or "none")
        rt.restart_requested = True
        threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        return f"<p class='comments'>{common.words('Restarting…')}</p>"

    def on_install(address: str, branch_name: str, folder: str, trusted: bool) -> tuple[str, Any, Any]:
        if not trusted:  # an extension is code: installing one is a decision, never a slip of the mouse
            return common.error_html("Tick the box to confirm you trust this repository."), gr.update(), gr.update()
        return install_extension(rt, address, branch_name, folder), extensions_table(rt), enabled_choices()

    def enabled_choices() -> Any:
        """The Installed tab's checkboxes after an install: every extension, the enabled ones ticked."""
        return gr.update(choices=[e.name for e in rt.extensions], visible=True,
                         value=[e.name for e in rt.extensions if e.enabled])

    def installed_urls() -> list[str]:
        return [ext.git().remote or "" for ext in rt.extensions if extension_git.is_checkout(ext.path)]

    def on_load(address: str, hidden: list[str], order_by: str, query: str) -> tuple[Any, str, str]:
        if refused:
            return None, "", common.error_html(refused)
        try:
            index = extension_index.fetch_index(address)
        except extension_index.IndexError_ as err:
            return None, "", common.error_html(str(err))
        return index, available_table(index, hidden, order_by, query, installed_urls()), ""

    def on_filter(index: Any, hidden: list[str], order_by: str, query: str) -> str:
        return available_table(index, hidden, order_by, query, installed_urls()) if index is not None else ""

    def on_install_chosen(address: str, index: Any, hidden: list[str], order_by: str,
                          query: str) -> tuple[str, str, Any, Any]:
        message = install_extension(rt, address)
        return message, on_filter(index, hidden, order_by, query), extensions_table(rt), enabled_choices()

    view = [hide_tags, order, search_text]
    load.click(on_load, inputs=[index_url, *view], outputs=[loaded, available, available_result])
    for control in view:
        control.change(on_filter, inputs=[loaded, *view], outputs=[available], queue=False, show_progress="hidden")
    install_chosen.click(on_install_chosen, inputs=[chosen_url, loaded, *view],
                         outputs=[available_result, available, table, chosen])
    apply.click(on_apply, inputs=[chosen], outputs=[result], queue=False)
    check.click(lambda: extensions_table(rt, check_updates(rt)), outputs=[table])
    update.click(lambda: extensions_table(rt, update_extensions(rt)), outputs=[table])
    install.click(on_install, inputs=[url, branch, dirname, trust], outputs=[install_result, table, chosen])
    return table
