"""Call a running server's gradio events the way the page does: read ``/config``, find the event by its trigger's
``elem_id``, POST ``/gradio_api/queue/join`` with every input's value, then read the server-sent events of
``/gradio_api/queue/data`` until the call completes.

Tests use it to send what a browser (or an attacker with a browser's tools) can send: any JSON as an input value,
e.g. a gallery item ``{"path": "/etc/passwd"}``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class EventResult:
    status: int  # HTTP status of queue/join
    completed: dict[str, Any] | None  # the process_completed message, None when the join was refused
    body: str  # the join's response body

    @property
    def success(self) -> bool:
        return bool(self.completed and self.completed.get("success"))

    @property
    def outputs(self) -> list[Any]:
        return list(((self.completed or {}).get("output") or {}).get("data") or [])

    @property
    def error(self) -> str:
        if self.completed is None:
            return self.body
        return str((self.completed.get("output") or {}).get("error") or "")


class PageEvents:
    """The events of one running server's page."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Origin": self.url, "Sec-Fetch-Site": "same-origin", **(headers or {})}
        self.config = self._get_json("/config")
        self.components = {c["id"]: c for c in self.config["components"]}
        self.session_hash = uuid.uuid4().hex[:11]

    def _get_json(self, path: str) -> Any:
        request = urllib.request.Request(self.url + path, headers=self.headers)
        with _NO_PROXY.open(request, timeout=30) as r:
            return json.loads(r.read())

    def component(self, elem_id: str) -> int:
        for c in self.config["components"]:
            if c.get("props", {}).get("elem_id") == elem_id:
                return int(c["id"])
        raise KeyError(f"no component with elem_id {elem_id!r}")

    def dependencies(self, elem_id: str, event: str = "click") -> list[dict[str, Any]]:
        target = self.component(elem_id)
        return [d for d in self.config["dependencies"] if [target, event] in d["targets"] and d["backend_fn"]]

    def dependency(self, elem_id: str, event: str = "click", with_input: str | None = None) -> dict[str, Any]:
        """The (first) backend event of ``elem_id``'s ``event``; with ``with_input`` the one taking that input."""
        deps = self.dependencies(elem_id, event)
        if with_input is not None:
            wanted = self.component(with_input)
            deps = [d for d in deps if wanted in d["inputs"]]
        if not deps:
            raise KeyError(f"no backend {event} event on {elem_id!r}" + (f" taking {with_input!r}" if with_input
                                                                           else ""))
        return deps[0]

    def tab_select(self, tab_id: str) -> dict[str, Any]:
        """Click a sub-tab as the page does: its select event is a JS function (no server call) whose values go to
        its outputs, the hidden number holding the mode; what it sets, by elem_id, for the next call's fields."""
        tab = next(i for i, c in self.components.items() if c.get("props", {}).get("id") == tab_id)
        dep = next(d for d in self.config["dependencies"] if [tab, "select"] in d["targets"])
        assert not dep["backend_fn"] and dep["js"].startswith("() => ")
        values = json.loads(dep["js"][len("() => "):])
        return {self.components[out]["props"]["elem_id"]: value for out, value in zip(dep["outputs"], values)
                if not isinstance(value, dict)}  # the mode number; visibility updates do not reach the server

    def default_inputs(self, dep: dict[str, Any]) -> list[Any]:
        return [self.components[i].get("props", {}).get("value") for i in dep["inputs"]]

    def call(self, dep: dict[str, Any], values: dict[str, Any] | Sequence[Any] | None = None,
             timeout: float = 120) -> EventResult:
        """Run ``dep`` with its inputs' page values, replaced by ``values`` ({elem_id: value} or a full list)."""
        if isinstance(values, dict) or values is None:
            data = self.default_inputs(dep)
            for elem_id, value in (values or {}).items():
                data[dep["inputs"].index(self.component(elem_id))] = value
        else:
            data = list(values)
        body = json.dumps({"data": data, "event_data": None, "fn_index": dep["id"],
                           "trigger_id": dep["targets"][0][0], "session_hash": self.session_hash}).encode()
        request = urllib.request.Request(f"{self.url}/gradio_api/queue/join", data=body, method="POST",
                                         headers={**self.headers, "Content-Type": "application/json"})
        try:
            with _NO_PROXY.open(request, timeout=30) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return EventResult(err.code, None, err.read().decode(errors="replace"))
        return EventResult(status, self._wait(timeout), text)

    def _wait(self, timeout: float) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url}/gradio_api/queue/data?session_hash={self.session_hash}",
                                         headers={**self.headers, "Accept": "text/event-stream"})
        with _NO_PROXY.open(request, timeout=timeout) as stream:
            for raw in stream:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
        raise AssertionError("the event stream ended without process_completed")
