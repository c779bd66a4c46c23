"""A learner on a JupyterHub, driven over HTTP: log in, start the server, pull the course, run code in a kernel.

What a learner's browser does, done with plain requests: the hub's login form, the hub's REST API
(a token, the server's start and readiness), nbgitpuller's pull endpoint and the Jupyter server's
kernel API (a session per notebook, code sent over the kernel's websocket). The tests use it to play
a whole class at once; an instructor can use it to try a hub before class.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from datetime import datetime, timezone

import requests
import websocket


class HubClientError(RuntimeError):
    """The hub or the learner's server answered something else than a learner's browser expects."""


def _check(r: requests.Response, *ok: int) -> requests.Response:
    if r.status_code not in (ok or (200,)):
        raise HubClientError(f"{r.request.method} {r.url}: {r.status_code} {r.text[:500]}")
    return r


class Learner:
    """One learner: a browser session (cookies) on the hub, then a token for the API calls."""

    def __init__(self, hub_url: str, name: str, password: str) -> None:
        self.hub_url, self.name, self.password = hub_url.rstrip("/"), name, password
        self.http = requests.Session()
        self.token: str | None = None

    # ------------------------------------------------------------------ the hub
    def login(self) -> None:
        """The login form, as a browser fills it, then a token for this learner (``POST /users/:name/tokens``)."""
        _check(self.http.get(f"{self.hub_url}/hub/login", timeout=60))
        xsrf = self.http.cookies.get("_xsrf", path="/hub/")
        form = {"username": self.name, "password": self.password, "_xsrf": xsrf}
        r = self.http.post(f"{self.hub_url}/hub/login", data=form, allow_redirects=False, timeout=60)
        if r.status_code != 302:
            raise HubClientError(f"login of {self.name} refused: {r.status_code}")
        xsrf = self.http.cookies.get("_xsrf", path="/hub/")  # a new session, a new one
        r = self.http.post(
            f"{self.hub_url}/hub/api/users/{self.name}/tokens",
            json={"note": "a learner's session", "expires_in": 4 * 3600},
            headers={"X-XSRFToken": xsrf},
            timeout=60,
        )
        self.token = _check(r, 200, 201).json()["token"]

    def hub_api(self, method: str, path: str, **kw) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(method, f"{self.hub_url}/hub/api{path}", headers=headers, timeout=60, **kw)

    def start_server(self) -> None:
        _check(self.hub_api("POST", f"/users/{self.name}/server"), 201, 202, 400)  # 400: already running

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = _check(self.hub_api("GET", f"/users/{self.name}")).json().get("servers", {}).get("")
            if server and server.get("ready"):
                return
            if not server:
                raise HubClientError(f"the server of {self.name} stopped while starting")
            time.sleep(0.25)
        raise HubClientError(f"the server of {self.name} was not ready within {timeout:.0f} s")

    # ------------------------------------------------------------------ the learner's server
    @property
    def server_url(self) -> str:
        return f"{self.hub_url}/user/{self.name}"

    def api(self, method: str, path: str, **kw) -> requests.Response:
        """A call to the learner's Jupyter server (``/user/:name/api``+path), through the hub's proxy."""
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(method, f"{self.server_url}/api{path}", headers=headers, timeout=120, **kw)

    def pull(self, repo: str, branch: str = "main", targetpath: str = "sgd-course", timeout: float = 300) -> str:
        """What the nbgitpuller link's page does: stream the pull's progress; the log, or HubClientError."""
        query = urllib.parse.urlencode({"repo": repo, "branch": branch, "targetpath": targetpath})
        headers = {"Authorization": f"token {self.token}"}
        r = requests.get(f"{self.server_url}/git-pull/api?{query}", headers=headers, stream=True, timeout=timeout)
        _check(r)
        log = []
        for line in r.iter_lines(decode_unicode=True):
            if not line or not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if event.get("phase") == "error" or event.get("type") == "error":
                raise HubClientError(f"nbgitpuller: {event.get('message', '')}\n{event.get('output', '')}")
            log.append(event.get("output", ""))
            if event.get("phase") == "finished":
                return "".join(log)
        raise HubClientError("nbgitpuller's stream ended before the pull finished:\n" + "".join(log))

    def open_notebook(self, path: str) -> Kernel:
        """Open ``path`` (relative to the home folder) as JupyterLab does: a session, its kernel started in the
        notebook's folder."""
        body = {"path": path, "type": "notebook", "name": path.rsplit("/", 1)[-1], "kernel": {"name": "python3"}}
        session = _check(self.api("POST", "/sessions", json=body), 201).json()
        return Kernel(self, session["id"], session["kernel"]["id"])


class Kernel:
    """A kernel of the learner's server, spoken to over its websocket as JupyterLab does (JSON messages)."""

    def __init__(self, learner: Learner, session_id: str, kernel_id: str) -> None:
        self.learner, self.session_id, self.id = learner, session_id, kernel_id
        self.client_session = uuid.uuid4().hex
        self.reconnects = 0
        self.ws = self._connect()

    def _connect(self) -> websocket.WebSocket:
        url = self.learner.server_url.replace("http://", "ws://", 1) + f"/api/kernels/{self.id}/channels"
        return websocket.create_connection(
            f"{url}?session_id={self.client_session}",
            header=[f"Authorization: token {self.learner.token}"],
            timeout=600,
        )

    def _reconnect(self, lost: Exception) -> None:
        """Connect again after a lost connection, as JupyterLab does: the server kept the kernel's messages
        for this client session and sends them now. HubClientError if the kernel is gone."""
        try:
            r = self.learner.api("GET", f"/kernels/{self.id}")
        except requests.RequestException as e:
            raise HubClientError(f"the kernel's connection was lost ({lost}) and its server does not answer ({e})")
        if not r.ok:
            raise HubClientError(f"the kernel's connection was lost ({lost}); the kernel is gone ({r.status_code})")
        self.reconnects += 1
        try:
            self.ws.close(timeout=1)
        except (websocket.WebSocketException, OSError):
            pass
        self.ws = self._connect()

    def _message(self, msg_type: str, content: dict, channel: str = "shell") -> dict:
        return {
            "header": {
                "msg_id": uuid.uuid4().hex,
                "username": self.learner.name,
                "session": self.client_session,
                "msg_type": msg_type,
                "version": "5.3",
                "date": datetime.now(timezone.utc).isoformat(),
            },
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": channel,
            "buffers": [],
        }

    def execute(self, code: str, timeout: float = 600) -> tuple[list[dict], dict]:
        """Run ``code``; its outputs as a notebook stores them (display updates applied) and the reply's content."""
        msg = self._message(
            "execute_request",
            {"code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False},
        )
        self.ws.send(json.dumps(msg))
        msg_id = msg["header"]["msg_id"]
        outputs: list[dict] = []
        displays: dict[str, list[dict]] = {}
        reply, idle, clear_next = None, False, False
        deadline = time.monotonic() + timeout
        while reply is None or not idle:
            if time.monotonic() > deadline:
                raise HubClientError(f"no answer from the kernel within {timeout:.0f} s")
            try:
                frame = self.ws.recv()
            except (websocket.WebSocketConnectionClosedException, ConnectionError) as e:
                self._reconnect(e)
                continue
            if isinstance(frame, bytes):  # a message with binary buffers (widgets): not an output of ours
                continue
            m = json.loads(frame)
            if m.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = m["msg_type"], m["content"]
            if m["channel"] == "shell" and kind == "execute_reply":
                reply = content
                continue
            if kind == "status":
                idle = content["execution_state"] == "idle"
                continue
            if kind == "clear_output":
                if content.get("wait"):
                    clear_next = True
                else:
                    outputs.clear()
                continue
            if kind not in ("stream", "display_data", "execute_result", "error", "update_display_data"):
                continue
            if kind == "update_display_data":
                for out in displays.get(content.get("transient", {}).get("display_id"), []):
                    out["data"], out["metadata"] = content["data"], content.get("metadata", {})
                continue
            if clear_next:
                outputs.clear()
                clear_next = False
            out = {"output_type": kind}
            if kind == "stream":
                out.update(name=content["name"], text=content["text"])
            elif kind == "error":
                out.update(ename=content["ename"], evalue=content["evalue"], traceback=content["traceback"])
            else:
                out.update(data=content["data"], metadata=content.get("metadata", {}))
                if kind == "execute_result":
                    out["execution_count"] = content.get("execution_count")
                display_id = content.get("transient", {}).get("display_id")
                if display_id:
                    displays.setdefault(display_id, []).append(out)
            outputs.append(out)
        return outputs, reply

    def close(self) -> None:
        """Close the websocket and shut the kernel down (its session deleted), as closing the notebook does."""
        try:
            self.ws.close()
        finally:
            self.learner.api("DELETE", f"/sessions/{self.session_id}")
