"""A class on one machine: a real JupyterHub with the course installed once and the data shared read-only.

    python -m tools.hub start  [--dir build/hub] [--data build/class-data] [--port 8000]   # make hub
    python -m tools.hub stop   [--dir build/hub]                                            # make hub-stop
    python -m tools.hub restart-hub [--dir build/hub]   # the hub process only: the proxy and servers stay
    python -m tools.hub status [--dir build/hub]
    python -m tools.hub publish [--repo URL]            # the student copies, as a new commit of the course repo
    python -m tools.hub link HUB_URL [--repo URL] [--branch main] [--lesson 00]   # an nbgitpuller link

`start` provisions the data once into a folder that it then makes read-only (`provision_shared`),
publishes the student copies (`tools/classroom.py students`) into a git repository beside the hub
(`<dir>/course.git`), starts configurable-http-proxy (installed by `make hub` into `.node/`) and then
JupyterHub (`hub/jupyterhub_config.py`), on 127.0.0.1 only. Every process it starts, and every
learner's server and kernel, carries ``SGD_HUB_DIR=<dir>`` in its environment: `stop` stops the
learners' servers through the hub's API, then the hub and the proxy, and then anything that still
carries the mark, so that nothing is left running.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the course's environment: the hub and every learner use it
CONFIG = ROOT / "hub" / "jupyterhub_config.py"
RUNTIME_PREFIX = "sgd-hub-"  # the kernels' runtime folder, in the system's temporary folder
NODE = ROOT / ".node"  # configurable-http-proxy, installed by `make hub` from hub/package-lock.json
PROXY = NODE / "node_modules" / ".bin" / "configurable-http-proxy"
DEFAULT_DIR = ROOT / "build" / "hub"
DEFAULT_DATA = ROOT / "build" / "class-data"
INSTRUCTOR = "instructor"
ADMIN_CONTACT = "your instructor (whoever runs this JupyterHub)"
COURSE_FOLDER = "sgd-course"  # where nbgitpuller puts the course in a learner's home
LOCAL = "127.0.0.1"


class HubError(RuntimeError):
    """The hub could not be started or stopped; the message says what to do."""


# ----------------------------------------------------------------------------------- the data
def _tree(root: Path) -> Iterator[os.DirEntry]:
    """Every entry under ``root`` (not following links), folders before what they hold."""
    with os.scandir(root) as entries:
        for e in entries:
            yield e
            if e.is_dir(follow_symlinks=False):
                yield from _tree(Path(e.path))


def _chmod_tree(root: Path, writable: bool) -> None:
    """Give (or take away) write permission on ``root`` and everything under it, for everyone."""

    def chmod(path: str, mode: int) -> None:
        new = (mode | 0o200) if writable else (mode & ~0o222)
        if new != mode:
            os.chmod(path, new)

    chmod(str(root), root.lstat().st_mode & 0o7777)
    for e in _tree(root):
        if not e.is_symlink():
            chmod(e.path, e.stat(follow_symlinks=False).st_mode & 0o7777)


def shared_data_problem(folder: Path) -> str | None:
    """Why ``folder`` is not yet a ready, read-only shared data folder, or None if it is one."""
    from helpers import storage

    try:
        storage.check_shared(folder)
    except storage.DataError as e:
        return str(e)
    if folder.lstat().st_mode & 0o222:
        return f"{folder} is writable"
    for e in _tree(folder):
        if not e.is_symlink() and e.stat(follow_symlinks=False).st_mode & 0o222:
            return f"{e.path} is writable"
    return None


def provision_shared(folder: Path, archives: Path | None = None) -> bool:
    """Provision the datasets once into ``folder`` and make it read-only; True if there was anything to do.

    Runs `python -m helpers provision` (progress on stderr), as an instructor would. Several callers at
    once (test workers) take turns on ``<folder>.lock`` beside it.
    """
    from filelock import FileLock

    folder = Path(folder).resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if shared_data_problem(folder) is None:
            return False
        if folder.exists():
            _chmod_tree(folder, writable=True)
        env = dict(os.environ, SGD_DATA=str(folder))
        env.pop("SGD_DATA_READONLY", None)
        if archives is not None:
            env["SGD_ARCHIVES"] = str(archives)
        done = subprocess.run([str(BIN / "python"), "-m", "helpers", "provision"], env=env, cwd=ROOT)
        if done.returncode != 0:
            raise HubError(f"provisioning the shared data folder {folder} failed (see the messages above)")
        for stale in folder.glob(".*.lock"):  # no learner ever takes a lock here
            stale.unlink()
        _chmod_tree(folder, writable=False)
        folder.chmod(0o555)
        problem = shared_data_problem(folder)
        if problem:
            raise HubError(f"the shared data folder {folder} is still not ready: {problem}")
        return True


def _is_mount(path: Path) -> bool:
    """Whether ``path`` is a mount point (a bind mount from the same disk too, which os.path.ismount misses)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return os.path.ismount(path)
    target = str(Path(path).resolve())
    escaped = target.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")
    return any(line.split()[4] == escaped for line in lines)


def _mount_read_only(data: Path, mountpoint: Path) -> Path:
    """The folder learners get as ``SGD_DATA``: ``data`` itself, or, when the hub runs as root (whom permissions
    do not stop, and so neither its learners), a read-only bind mount of it, where any write fails (EROFS)."""
    if os.geteuid() != 0 or not data.is_dir():  # a missing folder: the learners' first cell says so
        return data
    mountpoint.mkdir(exist_ok=True)
    if not _is_mount(mountpoint):
        mount = ["mount", "--bind", "-o", "ro", str(data), str(mountpoint)]
        done = subprocess.run(mount, capture_output=True, text=True)
        if done.returncode != 0:
            raise HubError(
                f"cannot mount {data} read-only at {mountpoint} ({done.stderr.strip()}); as root the learners' servers "
                "run as root, which file permissions do not stop: run `make hub` as a normal user instead"
            )
    try:
        tempfile.TemporaryFile(dir=mountpoint).close()
    except OSError:
        return mountpoint
    _unmount(mountpoint)
    raise HubError(f"{mountpoint} is writable although it was mounted read-only")


def _unmount(mountpoint: Path) -> None:
    while _is_mount(mountpoint):
        done = subprocess.run(["umount", str(mountpoint)], capture_output=True, text=True)
        if done.returncode != 0:
            raise HubError(f"cannot unmount {mountpoint}: {done.stderr.strip()}")
    if mountpoint.is_dir() and not any(mountpoint.iterdir()):
        mountpoint.rmdir()


# ----------------------------------------------------------------------------------- the course
def _git(*args: str, cwd: Path | None = None) -> str:
    ident = ["-c", "user.name=Course instructor", "-c", "user.email=instructor@localhost"]
    ident += ["-c", "init.defaultBranch=main"]
    done = subprocess.run(["git", *ident, *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise HubError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def publish(course: Path | str, lessons: list[Path] | None = None, message: str = "Update the lessons") -> str:
    """Commit the student copies of ``lessons`` (default: every lesson) to the course's git repository, branch main.

    ``course`` is a local folder (a bare repository, made if missing: the demo hub's) or any address git can
    push to (a class's repository on a forge). Learners get the lessons with an nbgitpuller link
    (`pull_link`); publishing again after an edit is the instructor's update, which the next pull merges
    into each learner's copy. Returns the commit's hash.
    """
    from tools import classroom

    remote = str(course)
    if "://" not in remote and ":" not in remote.split("/")[0]:  # a local folder, not user@host:path nor a URL
        local = Path(remote).resolve()
        if not (local / "HEAD").exists():
            local.mkdir(parents=True, exist_ok=True)
            _git("init", "--bare", "--quiet", str(local))
        remote = str(local)
    with tempfile.TemporaryDirectory(prefix="sgd-publish-") as tmp:
        work = Path(tmp) / "course"
        _git("clone", "--quiet", remote, str(work))
        for old in work.glob("*.ipynb"):
            old.unlink()
        classroom.students(work, lessons if lessons is not None else classroom.lessons())
        (work / "README.md").write_text(
            "# SGD, from scratch to fastai\n\nThe lessons, with an empty cell after each exercise for your answer.\n"
            "Open `00_*.ipynb` first. Your edits stay yours: when the instructor updates a lesson, opening the\n"
            "course's link again merges the update into your copy and keeps what you wrote.\n"
        )
        _git("add", "--all", cwd=work)
        if _git("status", "--porcelain", cwd=work):
            _git("commit", "--quiet", "-m", message, cwd=work)
            _git("push", "--quiet", "origin", "HEAD:main", cwd=work)
        return _git("rev-parse", "HEAD", cwd=work)


def pull_link(hub_url: str, repo: str, branch: str = "main", lesson: str | None = None) -> str:
    """The nbgitpuller link that puts the course into ``~/sgd-course`` and opens it (or one lesson) in JupyterLab."""
    path = COURSE_FOLDER
    if lesson is not None:
        from tools import classroom

        path += "/" + classroom.lesson(lesson).name
    query = urllib.parse.urlencode(
        {"repo": repo, "branch": branch, "targetpath": COURSE_FOLDER, "urlpath": f"lab/tree/{path}"},
        quote_via=urllib.parse.quote,
    )
    return f"{hub_url.rstrip('/')}/hub/user-redirect/git-pull?{query}"


# ----------------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` (as the proxy would: connections closing there do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOCAL, port))
        except OSError:
            return False
        return True


def _alive(pid: int | None) -> bool:
    """Whether ``pid`` runs (a zombie does not; one that is our child is reaped here)."""
    if not pid:
        return False
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def hub_processes(state: Path) -> list[int]:
    """Every running process that carries ``SGD_HUB_DIR=<state>``: the proxy, the hub, servers, kernels."""
    mark = f"SGD_HUB_DIR={Path(state).resolve()}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry.name}/environ").read_bytes()
        except OSError:
            continue
        if mark in environ.split(b"\0") and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


# ----------------------------------------------------------------------------------- the hub
@dataclass
class Hub:
    """A running hub: its state folder and settings (ports, tokens, the learners' password)."""

    dir: Path
    settings: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{LOCAL}:{self.settings['port']}"

    def api(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        """A call to the hub's REST API (``/hub/api``+path), with the class tools' token unless another is given."""
        headers = {"Authorization": f"token {token or self.settings['tools_token']}"}
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=60, **kw)


def _settings_path(state: Path) -> Path:
    return Path(state) / "hub.json"


def load(state: Path = DEFAULT_DIR) -> Hub:
    path = _settings_path(state)
    if not path.exists():
        raise HubError(f"no hub was set up in {state} (run `make hub`)")
    return Hub(Path(state).resolve(), json.loads(path.read_text()))


def _save(hub: Hub) -> None:
    path = _settings_path(hub.dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(hub.settings, indent=1))
    tmp.chmod(0o600)  # tokens and the password: the instructor's eyes only
    os.replace(tmp, path)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _env(hub: Hub) -> dict[str, str]:
    env = dict(os.environ, SGD_HUB_DIR=str(hub.dir), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    for name in ("SGD_DATA", "SGD_DATA_READONLY", "SGD_DATA_ADMIN", "JUPYTERHUB_API_TOKEN"):
        env.pop(name, None)
    return env


def _start_proxy(hub: Hub) -> None:
    if not PROXY.exists():
        raise HubError(f"configurable-http-proxy is not installed in {NODE}: run `make hub` (it installs it with npm)")
    s = hub.settings
    cmd = [
        str(PROXY),
        f"--ip={LOCAL}",
        f"--port={s['port']}",
        f"--api-ip={LOCAL}",
        f"--api-port={s['proxy_api_port']}",
        f"--default-target=http://{LOCAL}:{s['hub_port']}",
        f"--error-target=http://{LOCAL}:{s['hub_port']}/hub/error",
        "--log-level=warn",
    ]
    env = dict(_env(hub), CONFIGPROXY_AUTH_TOKEN=s["proxy_token"])
    with open(hub.dir / "proxy.log", "ab") as log:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=hub.dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    s["proxy_pid"] = proc.pid
    _save(hub)


def _start_hub_process(hub: Hub, timeout: float) -> None:
    cmd = [str(BIN / "jupyterhub"), "-f", str(CONFIG)]
    with open(hub.dir / "hub.log", "ab") as log:
        proc = subprocess.Popen(
            cmd,
            env=_env(hub),
            cwd=hub.dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    hub.settings["hub_pid"] = proc.pid
    _save(hub)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(proc.pid):
            raise HubError(f"JupyterHub stopped while starting; the end of its log:\n{_log_tail(hub.dir / 'hub.log')}")
        try:
            if hub.api("GET", "/users").status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.25)
    raise HubError(
        f"JupyterHub did not answer within {timeout:.0f} s; the end of its log:\n{_log_tail(hub.dir / 'hub.log')}"
    )


def start(
    state: Path = DEFAULT_DIR,
    data: Path = DEFAULT_DATA,
    port: int = 0,
    admin_contact: str = ADMIN_CONTACT,
    archives: Path | None = None,
    timeout: float = 120,
    provision: bool = True,
) -> Hub:
    """Provision the shared data, publish the course, start the proxy and the hub; return the running hub.

    ``port`` 0 picks a free one. The password and tokens of an earlier run in ``state`` are kept.
    ``provision=False`` takes ``data`` as it is (provisioned elsewhere, or missing: what learners then see).
    """
    state = Path(state).resolve()
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)  # learners (other uids, when run as root) reach their homes and the course through it
    old = json.loads(_settings_path(state).read_text()) if _settings_path(state).exists() else {}
    hub = Hub(state, old)
    if _alive(old.get("hub_pid")) or _alive(old.get("proxy_pid")):
        raise HubError(f"a hub from {state} is still running at {hub.url}: `make hub-stop` first")
    if port and not _port_free(port):
        raise HubError(f"port {port} on {LOCAL} is taken: choose another, e.g. `make hub HUB_PORT={port + 1}`")
    data = Path(data).resolve()
    if provision:
        provision_shared(data, archives)
    (state / "homes").mkdir(mode=0o755, exist_ok=True)
    course = state / "course.git"
    if not (course / "HEAD").exists():
        publish(course, message="The lessons")
    if len(tempfile.gettempdir()) > 40:  # the kernels' sockets live there, and a socket's path is short
        raise HubError(f"the temporary folder {tempfile.gettempdir()} has too long a path: set TMPDIR=/tmp")
    hub.settings = {
        "port": port or free_port(),
        "hub_port": free_port(),
        "proxy_api_port": free_port(),
        "proxy_token": old.get("proxy_token") or secrets.token_hex(32),
        "tools_token": old.get("tools_token") or secrets.token_hex(32),
        "password": old.get("password") or secrets.token_urlsafe(9),
        "admin_password": old.get("admin_password") or secrets.token_urlsafe(24),
        "instructor": INSTRUCTOR,
        "data": str(data),
        "learners_data": str(_mount_read_only(data, state / "data")),
        "admin_contact": admin_contact,
        "course": str(course),
        # the kernels' sockets (hub/jupyterhub_config.py): short, fresh at each start, removed by `stop`
        "runtime": tempfile.mkdtemp(prefix=RUNTIME_PREFIX),
    }
    _save(hub)
    try:
        _start_proxy(hub)
        _start_hub_process(hub, timeout)
    except BaseException:
        stop(state)
        raise
    return hub


def restart_hub(state: Path = DEFAULT_DIR, timeout: float = 120) -> Hub:
    """Stop the hub process and start it again (a configuration change, an upgrade): the proxy, the
    learners' servers and their kernels keep running, and the new hub finds them again."""
    hub = load(state)
    pid = hub.settings.get("hub_pid")
    _signal([pid] if _alive(pid) else [], signal.SIGTERM)
    if _wait_gone([pid] if pid else [], 30):
        _signal([pid], signal.SIGKILL)
        _wait_gone([pid], 10)
    _start_hub_process(hub, timeout)
    return hub


def stop(state: Path = DEFAULT_DIR, timeout: float = 60) -> list[int]:
    """Stop every learner's server (through the API), the hub, the proxy, then anything left; return what was
    still running at the end and had to be killed (empty when all stopped cleanly)."""
    state = Path(state).resolve()
    try:
        hub = load(state)
    except HubError:
        hub = Hub(state, {})
    if _alive(hub.settings.get("hub_pid")):
        try:
            users = hub.api("GET", "/users").json()
            for u in users:
                for name in u.get("servers", {}):
                    hub.api("DELETE", f"/users/{u['name']}/servers/{name}" if name else f"/users/{u['name']}/server")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not any(u.get("servers") for u in hub.api("GET", "/users").json()):
                    break
                time.sleep(0.25)
        except (requests.RequestException, ValueError):
            pass  # the hub does not answer: its servers are stopped below with the rest
    for key in ("hub_pid", "proxy_pid"):
        pid = hub.settings.get(key)
        if _alive(pid):
            _signal([pid], signal.SIGTERM)
            if _wait_gone([pid], 20):
                _signal([pid], signal.SIGKILL)
                _wait_gone([pid], 5)
    left = hub_processes(state)
    if left:
        _signal(left, signal.SIGTERM)
        if still := _wait_gone(left, 10):
            _signal(still, signal.SIGKILL)
            _wait_gone(still, 5)
    _unmount(state / "data")
    runtime = Path(hub.settings.get("runtime", ""))
    if runtime.name.startswith(RUNTIME_PREFIX) and not hub_processes(state):
        shutil.rmtree(runtime, ignore_errors=True)
    if hub.settings:
        hub.settings.pop("hub_pid", None)
        hub.settings.pop("proxy_pid", None)
        _save(hub)
    if hub_processes(state):
        raise HubError(f"some processes of the hub in {state} would not stop: {hub_processes(state)}")
    return left


# ----------------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["start", "stop", "restart-hub", "status", "publish", "link"])
    p.add_argument("hub_url", nargs="?", help="link: the hub's address, e.g. https://hub.example.edu")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the hub's state folder (default build/hub)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder (default build/class-data)")
    p.add_argument("--port", type=int, default=0, help="start: the port learners open (default: a free one)")
    p.add_argument("--admin-contact", default=ADMIN_CONTACT, help="start: whom learners ask about the data")
    p.add_argument("--repo", help="link, publish: the course's git repository (default: this hub's local one)")
    p.add_argument("--branch", default="main", help="link: the course repository's branch")
    p.add_argument("--lesson", help="link: open this lesson (00, 01, ...) after the pull")
    args = p.parse_args(argv)
    try:
        if args.command == "start":
            hub = start(args.dir, args.data, args.port, args.admin_contact)
            s = hub.settings
            print(
                f"JupyterHub for the class: {hub.url}/hub/login  (any name, password {s['password']};"
                f" the admin, '{INSTRUCTOR}', logs in with {s['admin_password']})\n"
                f"the course for every learner: {pull_link(hub.url, 'file://' + s['course'], lesson='00')}\n"
                f"shared data (read-only): {s['learners_data']}\nstate and logs: {hub.dir}\nstop it: make hub-stop"
            )
        elif args.command == "stop":
            killed = stop(args.dir)
            said = f"; {len(killed)} processes had to be stopped by signal" if killed else ""
            print(f"hub in {args.dir} stopped{said}")
        elif args.command == "restart-hub":
            print(f"hub restarted at {restart_hub(args.dir).url}; learners' servers kept running")
        elif args.command == "status":
            hub = load(args.dir)
            state = "running" if _alive(hub.settings.get("hub_pid")) else "stopped"
            print(f"{hub.url}: {state}, {len(hub_processes(hub.dir))} processes")
        elif args.command == "publish":
            print(publish(args.repo or load(args.dir).settings["course"]))
        elif args.command == "link":
            if not args.hub_url:
                p.error("link needs the hub's address")
            repo = args.repo or "file://" + load(args.dir).settings["course"]
            print(pull_link(args.hub_url, repo, args.branch, args.lesson))
    except HubError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
