"""The demo class's hub (`make hub`): a learner logs in and runs a cell, the course arrives and updates by
nbgitpuller, and the bad situations (the shared data missing or incomplete, a learner's home full, the hub
restarted while learners work) end with clear errors or with nothing lost. The whole class at once:
tests/test_hub_class.py.

Everything runs on 127.0.0.1 with free ports; every hub is stopped at the end, and the tests check that
none of its processes is left.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest
import requests
from hubtest import code_cells, keep_logs, learner_processes, need_proxy, run_cell, running_hub, wait_until

from tools import classroom
from tools import hub as H
from tools.hub_client import Learner

ROOT = H.ROOT
LESSON = classroom.lesson("00")
# every file a learner's server and kernel may write in the home folder on their own
CHANNELS = ("shell", "iopub", "stdin", "control", "hb")  # a kernel's five channels (Jupyter's messaging protocol)
TOOL_FOLDERS = {".ipython", ".local", ".cache", ".config", ".jupyter", ".ipynb_checkpoints", ".npm"}


def make(*args: str) -> subprocess.CompletedProcess:
    """`make` in the project, with this test's Python environment as the venv."""
    cmd = ["make", "--no-print-directory", *args, f"VENV={sys.prefix}"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The hub as `make hub` starts it (state in a temporary folder, a free port); `make hub-stop` after it."""
    need_proxy()
    state = tmp_path_factory.mktemp("made") / "hub"
    port = H.free_port()
    try:
        done = make("hub", f"HUB_DIR={state}", f"HUB_PORT={port}")
        assert done.returncode == 0, done.stdout + done.stderr
        running = H.load(state)
        assert running.url == f"http://127.0.0.1:{port}"
        assert "JupyterHub for the class: " + running.url in done.stdout
        assert H.pull_link(running.url, "file://" + running.settings["course"], lesson="00") in done.stdout
        yield running
    finally:
        done = make("hub-stop", f"HUB_DIR={state}")
        keep_logs(state, "hub-made")
        assert done.returncode == 0, done.stdout + done.stderr
        assert H.hub_processes(state) == [], "make hub-stop left processes of the hub running"
        assert H._port_free(port) and not H._is_mount(state / "data")
        assert not Path(H.load(state).settings["runtime"]).exists(), "make hub-stop left the kernels' runtime folder"


def learner(hub: H.Hub, name: str) -> Learner:
    """A learner logged in through the login form, with a running server."""
    who = Learner(hub.url, name, hub.settings["password"])
    who.login()
    who.start_server()
    who.wait_ready()
    return who


def home(hub: H.Hub, name: str) -> Path:
    return hub.dir / "homes" / name


def data_written_home(folder: Path) -> list[str]:
    """Anything in a learner's home but their course and the Jupyter tools' own folders."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if not ({p.relative_to(folder).parts[0]} & (TOOL_FOLDERS | {H.COURSE_FOLDER}))
    )


def cells(path: Path) -> list[tuple]:
    """A notebook's cells as a learner reads them (kind, source, outputs), without their random ids."""
    nb = nbformat.read(path, as_version=4)
    return [(c.cell_type, c.source, json.dumps(c.get("outputs"), sort_keys=True)) for c in nb.cells]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------ a learner
def test_a_learner_logs_in_and_runs_a_cell(hub):
    ada = learner(hub, "ada")
    kernel = ada.open_notebook("first.ipynb")
    try:
        outputs, reply = kernel.execute(
            "import os, helpers\n"
            "device = helpers.setup()\n"
            "digits = helpers.load_3s_and_7s()\n"
            "print(len(digits['valid_3']), os.environ['SGD_DATA'] == os.environ['HOME'], os.getcwd())"
        )
        assert reply["status"] == "ok", outputs
        assert outputs[0]["text"] == f"1010 False {home(hub, 'ada')}\n"
        # the shared folder refuses a learner's write, whoever the learner runs as
        outputs, reply = kernel.execute("open(os.path.join(os.environ['SGD_DATA'], 'mine.txt'), 'w')")
        assert reply["status"] == "error" and reply["ename"] in ("OSError", "PermissionError"), reply
        assert "Read-only file system" in reply["evalue"] or "Permission denied" in reply["evalue"]
    finally:
        kernel.close()
    assert data_written_home(home(hub, "ada")) == []


def test_a_lost_connection_is_made_again(hub):
    """As JupyterLab does: the kernel's messages sent while the learner's connection was down arrive after it."""
    ada = learner(hub, "ada")
    kernel = ada.open_notebook("reconnect.ipynb")
    try:
        timer = threading.Timer(1.0, lambda: kernel.ws.sock.shutdown(socket.SHUT_RDWR))  # the network drops
        timer.start()
        outputs, reply = kernel.execute("import time\nprint('before')\ntime.sleep(3)\nprint('after')")
        timer.join()
        assert kernel.reconnects == 1 and reply["status"] == "ok"
        assert "".join(o["text"] for o in outputs if o["output_type"] == "stream").endswith("after\n"), outputs
    finally:
        kernel.close()


def test_kernels_talk_over_unix_sockets(hub):
    """A class's kernels starting at once must not race for TCP ports (hub/jupyterhub_config.py says why): a
    learner's kernel has an ipc connection file in the hub's short runtime folder, its five channels Unix sockets."""
    cy = learner(hub, "cy")
    kernel = cy.open_notebook("sockets.ipynb")
    try:
        outputs, reply = kernel.execute("print(6 * 7)")
        assert reply["status"] == "ok" and outputs[0]["text"] == "42\n", outputs
        [connection] = Path(hub.settings["runtime"]).glob(f"*/kernel-{kernel.id}.json")
        info = json.loads(connection.read_text())
        sockets = [Path(f"{info['ip']}-{info[f'{channel}_port']}") for channel in CHANNELS]
        assert info["transport"] == "ipc" and all(p.is_socket() for p in sockets), info
        assert max(len(str(p)) for p in sockets) < 100  # a Unix socket's path: 107 characters at most
    finally:
        kernel.close()


def test_passwords(hub):
    wrong = Learner(hub.url, "eve", "not the password")
    with pytest.raises(Exception, match="login of eve refused"):
        wrong.login()
    admin = Learner(hub.url, H.INSTRUCTOR, hub.settings["admin_password"])
    admin.login()
    assert admin.hub_api("GET", "/users").status_code == 200  # the instructor sees the class
    with pytest.raises(Exception, match="refused"):
        Learner(hub.url, H.INSTRUCTOR, hub.settings["password"]).login()  # not with the learners' password


# ------------------------------------------------------------------------------------ distribution
def test_the_course_arrives_and_updates_by_nbgitpuller(hub, tmp_path):
    bea = learner(hub, "bea")
    repo = "file://" + hub.settings["course"]
    link = H.pull_link(hub.url, repo, lesson="00")
    page = bea.http.get(link, timeout=120)  # the link, opened in bea's logged-in browser
    assert page.status_code == 200 and "/user/bea/git-pull" in page.url, page.url
    bea.pull(repo)  # what that page then asks the server to do
    course = home(hub, "bea") / H.COURSE_FOLDER
    students = tmp_path / "students"
    classroom.students(students, classroom.lessons())
    for path in classroom.lessons():
        assert cells(course / path.name) == cells(students / path.name)

    # bea answers an exercise of lesson 00 (saved through her server) and deletes lesson 02 by mistake
    nb_path = f"{H.COURSE_FOLDER}/{LESSON.name}"
    nb = bea.api("GET", f"/contents/{nb_path}").json()
    answer = next(c for c in nb["content"]["cells"] if "exercise" in c["metadata"].get("tags", []))
    answer["source"] = "# bea's answer\nprint('mine')\n"
    assert bea.api("PUT", f"/contents/{nb_path}", json={"type": "notebook", "content": nb["content"]}).ok
    lesson02 = classroom.lesson("02").name
    assert bea.api("DELETE", f"/contents/{H.COURSE_FOLDER}/{lesson02}").status_code == 204

    # the instructor updates lessons 00 (its first lines) and 01, and publishes
    edited = tmp_path / "edited"
    shutil.copytree(ROOT / "notebooks", edited)
    for number, note in (("00", "Update: read the summary first."), ("01", "Update: lesson 01 has a new note.")):
        path = edited / classroom.lesson(number).name
        lesson = nbformat.read(path, as_version=4)
        title = next(c for c in lesson.cells if c.cell_type == "markdown" and c.source.startswith("# "))
        title.source += f"\n\n{note}"
        nbformat.write(lesson, path)
    H.publish(Path(hub.settings["course"]), classroom.lessons(edited), message="Lessons 00 and 01: a note")

    bea.pull(repo)  # she opens the link again
    text = (course / LESSON.name).read_text()
    assert "bea's answer" in text and "Update: read the summary first." in text  # her edit and the update
    assert "Update: lesson 01 has a new note." in (course / classroom.lesson("01").name).read_text()
    assert cells(course / lesson02) == cells(students / lesson02)  # restored
    nbformat.validate(nbformat.read(course / LESSON.name, as_version=4))


def test_link_command():
    done = subprocess.run(
        [sys.executable, "-m", "tools.hub", "link", "https://hub.example.edu/", "--repo", "https://github.com/o/c"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "https://hub.example.edu/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgithub.com%2Fo%2Fc"
        "&branch=main&targetpath=sgd-course&urlpath=lab%2Ftree%2Fsgd-course"
    )


# ------------------------------------------------------------------------------------ bad situations
def test_hub_restarted_while_learners_work(hub):
    cyd = learner(hub, "cyd")
    kernel = cyd.open_notebook("work.ipynb")
    try:
        kernel.execute("x = 41")
        assert cyd.api("PUT", "/contents/notes.txt", json={"type": "file", "format": "text", "content": "mine"}).ok
        pids = sorted(learner_processes(hub.dir, "cyd"))
        H.restart_hub(hub.dir)
        # the same kernel, over the same connection, through the proxy that never stopped
        outputs, _ = kernel.execute("print(x + 1)")
        assert outputs == [{"output_type": "stream", "name": "stdout", "text": "42\n"}]
        server = cyd.hub_api("GET", "/users/cyd").json()["servers"][""]
        assert server["ready"] and sorted(learner_processes(hub.dir, "cyd")) == pids  # the same processes
        assert (home(hub, "cyd") / "notes.txt").read_text() == "mine"
        assert cyd.api("GET", "/contents/notes.txt").json()["content"] == "mine"
    finally:
        kernel.close()
    learner(hub, "dan")  # and the hub takes new learners again


@pytest.mark.skipif(os.geteuid() != 0, reason="a full home is made with a small tmpfs, which needs root")
def test_a_learners_home_full(hub):
    """The lesson still runs (the data is read from the shared folder, nothing is written home); saving says
    the disk is full and keeps the saved notebook as it was."""
    folder = home(hub, "fay")
    folder.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(folder)], check=True)
    try:
        fay = learner(hub, "fay")
        fay.pull("file://" + hub.settings["course"])
        saved = folder / H.COURSE_FOLDER / LESSON.name
        before = sha(saved)
        cells = code_cells(LESSON)[:5]  # the set-up, the data and the first PNGs read by hand
        kernel = fay.open_notebook(f"{H.COURSE_FOLDER}/{LESSON.name}")
        try:  # fay works a while (matplotlib's font cache is made in her home), then her home fills up
            assert [run_cell(kernel, cell) for cell in cells] == [None] * len(cells)
        finally:
            kernel.close()
        with open(folder / "big-file", "wb") as f:  # the learner's own data fills the rest of the home
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError as e:
                assert e.errno == 28  # ENOSPC
        kernel = fay.open_notebook(f"{H.COURSE_FOLDER}/{LESSON.name}")
        try:  # she opens the lesson again: it runs as before
            assert [run_cell(kernel, cell) for cell in cells] == [None] * len(cells)
        finally:
            kernel.close()
        nb = fay.api("GET", f"/contents/{H.COURSE_FOLDER}/{LESSON.name}").json()
        nb["content"]["cells"][0]["source"] += "\n" + "an edit " * 20_000
        body = {"type": "notebook", "content": nb["content"]}
        r = fay.api("PUT", f"/contents/{H.COURSE_FOLDER}/{LESSON.name}", json=body)
        assert r.status_code == 500 and "No space left on device" in r.json()["message"], r.text
        assert sha(saved) == before
    finally:
        H.load(hub.dir).api("DELETE", "/users/fay/server")
        wait_until(lambda: not learner_processes(hub.dir, "fay"), 60, "fay's server did not stop")
        subprocess.run(["umount", str(folder)], check=True)


def test_shared_data_missing_or_incomplete(tmp_path):
    """A hub whose shared folder was never provisioned: the learner's first cell says whom to ask and what to run,
    and nothing is written into the learner's home."""
    data = tmp_path / "class-data"
    admin = "Ada (ada@example.edu)"
    with running_hub(tmp_path / "hub", "hub-no-data", data=data, provision=False, admin_contact=admin) as hub:
        gus = learner(hub, "gus")
        setup = code_cells(LESSON)[1]
        assert "helpers.setup()" in setup.source
        for situation in ("missing", "incomplete"):
            if situation == "incomplete":
                (data / "cache").mkdir(parents=True)  # an instructor's provisioning that broke off
            kernel = gus.open_notebook("lesson.ipynb")
            try:
                outputs, reply = kernel.execute(setup.source)
            finally:
                kernel.close()
            assert reply["status"] == "error" and reply["ename"] == "DataError", outputs
            said = reply["evalue"]
            assert f"The class's shared data folder {data} " in said
            assert ("does not exist" if situation == "missing" else "has no tensor cache of mnist_sample") in said
            assert f"ask {admin} to run `SGD_DATA={data} python -m helpers provision`" in said
            assert data_written_home(home(hub, "gus")) == []
        assert sorted(p.name for p in data.rglob("*")) == ["cache"]


def test_start_refuses_a_taken_port(tmp_path):
    need_proxy()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(H.HubError, match=f"port {port} on 127.0.0.1 is taken"):
            H.start(tmp_path / "hub", port=port, provision=False)
    assert H.hub_processes(tmp_path / "hub") == []


def test_settings_are_private(hub):
    assert (hub.dir / "hub.json").stat().st_mode & 0o077 == 0
    assert json.loads((hub.dir / "hub.json").read_text())["password"] == hub.settings["password"]
    assert requests.get(f"{hub.url}/hub/api/users", timeout=30).status_code == 403  # nobody without a token


def test_publish_to_a_class_repository(tmp_path):
    """`tools.hub publish --repo URL`: the student copies as a commit on a repository git pushes to."""
    remote = tmp_path / "sgd-course.git"
    subprocess.run(["git", "init", "--bare", "--quiet", "--initial-branch=main", str(remote)], check=True)
    done = subprocess.run(
        [sys.executable, "-m", "tools.hub", "publish", "--repo", f"file://{remote}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", f"file://{remote}", str(clone)], check=True)
    assert subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=clone, text=True).strip() == done.stdout.strip()
    assert sorted(p.name for p in clone.glob("*.ipynb")) == [p.name for p in classroom.lessons()]
    student = nbformat.read(clone / LESSON.name, as_version=4)
    assert not any("solution" in c.metadata.get("tags", []) for c in student.cells)
