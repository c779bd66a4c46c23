"""JupyterLab as a learner uses it: a real server on loopback, a real (headless) Chromium, a lesson
opened and its first cells run through the UI. Also: a slide deck shown with the network cut off.

Needs Debian's `chromium` (/usr/bin/chromium, or $CHROMIUM) and the `playwright` package (no browser
download: Playwright drives the system Chromium). Without them the tests are skipped, unless
SGD_REQUIRE_BROWSER=1 (CI sets it), when they fail. Screenshots go to $SGD_ARTIFACTS (default
artifacts/).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from tools import classroom

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("SGD_ARTIFACTS", ROOT / "artifacts"))
LESSON = classroom.lesson("00")  # the first lesson: what a learner opens first
# Chromium on a machine without internet: no background requests, no sandbox when root.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def _need_browser():
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -r requirements-dev.txt)")
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if os.environ.get("SGD_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright

    args = CHROMIUM_ARGS + (["--no-sandbox"] if os.geteuid() == 0 else [])
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            yield b
        finally:
            b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyter_lab(tmp_path):
    """`jupyter lab` as `make lab` starts it, on a copy of the lessons (running cells in the UI must not
    touch the stored notebooks), on a free loopback port with a random token. Always shut down."""
    lessons = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", lessons, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    settings = tmp_path / "lab-settings"
    # show every cell (no virtual scrolling) and ask for no news: the page must not reach the internet
    for plugin, values in {
        "notebook-extension/tracker": {"windowingMode": "none"},
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        ext, name = plugin.split("/")
        (settings / "@jupyterlab" / ext).mkdir(parents=True, exist_ok=True)
        (settings / "@jupyterlab" / ext / f"{name}.jupyterlab-settings").write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        OMP_NUM_THREADS="1",
    )
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={lessons}",
    ]
    cmd += ["--allow-root"] if os.geteuid() == 0 else []
    log = open(tmp_path / "jupyter.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyter.log").read_text()[-3000:])
            time.sleep(0.3)
        yield base, token, lessons
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def plot_cells(nb) -> list[int]:
    """The cells that store a drawing, in order."""
    return [i for i, c in enumerate(nb.cells) if any("image/png" in o.get("data", {}) for o in c.get("outputs", []))]


def test_a_lesson_runs_in_jupyterlab(browser, jupyter_lab):
    base, token, lessons = jupyter_lab
    nb = nbformat.read(LESSON, as_version=4)
    # run every cell up to and including the first one that draws; the next drawing stays as stored
    run_to, later_plot = plot_cells(nb)[:2]
    shapes = next(i for i, c in enumerate(nb.cells) if "load_3s_and_7s" in c.source)
    stored_text = nb.cells[shapes].outputs[0]["data"]["text/plain"]

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(f"{base}/lab/tree/{LESSON.name}?token={token}")
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")
    cells.nth(run_to).wait_for()
    page.locator(".jp-Toolbar-kernelName", has_text="Python 3").wait_for()  # the notebook's kernel started
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()

    cells.nth(0).click()
    page.keyboard.press("Escape")  # command mode
    for _ in range(run_to + 1):
        page.keyboard.press("Shift+Enter")
    # the plot drawn just now, by this server's kernel
    fresh = cells.nth(run_to).locator(".jp-OutputArea-output img")
    try:
        fresh.wait_for()
    except Exception:  # what the page shows instead, for the CI artifacts
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        cells.nth(run_to).scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "jupyterlab-lesson-00-no-plot.png"))
        raise
    assert cells.nth(run_to).locator(".jp-InputArea-prompt").inner_text().strip() != "[ ]:"
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
    # a text output that the kernel printed, equal to the one stored (and checked by nbval)
    out = cells.nth(shapes).locator(".jp-OutputArea-output").inner_text()
    assert out.split() == stored_text.split()
    assert cells.nth(shapes).locator(".jp-InputArea-prompt").inner_text().strip() not in ("[ ]:", "[*]:")
    assert fresh.evaluate("img => img.naturalWidth") > 100

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cells.nth(run_to).scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "jupyterlab-lesson-00-run.png"))
    # a plot stored in the notebook (not re-run) renders too
    stored = cells.nth(later_plot).locator(".jp-OutputArea-output img")
    stored.scroll_into_view_if_needed()
    assert stored.evaluate("img => img.complete && img.naturalWidth") > 100
    page.screenshot(path=str(ARTIFACTS / "jupyterlab-lesson-00-stored-plot.png"))
    # nothing the run printed went to stderr (a stored error further down, shown on purpose, is not this run's)
    for i in range(run_to + 1):
        errors = cells.nth(i).locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        assert errors.count() == 0, errors.first.inner_text()
    page.close()
    # the notebook on disk was not saved with half a run in it
    assert nbformat.read(lessons / LESSON.name, as_version=4).cells[shapes].outputs == nb.cells[shapes].outputs


def test_a_slide_deck_works_without_the_internet(browser, tmp_path):
    deck = classroom.slides(tmp_path, [classroom.lesson("04")])[0]  # plots, tables and math

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    asked = []
    page.route(
        "**/*",
        lambda route: (
            (asked.append(route.request.url), route.abort())
            if not route.request.url.startswith("file:")
            else route.continue_()
        ),
    )
    page.goto(deck.as_uri())
    page.wait_for_function("() => window.Reveal && Reveal.isReady()")
    page.wait_for_function(
        "() => window.MathJax && MathJax.Hub && document.querySelector('.MathJax, .MathJax_CHTML, .MathJax_Display')"
    )
    total = page.evaluate("() => Reveal.getTotalSlides()")
    assert total > 10
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => Reveal.getIndices().h === 1")
    assert asked == [], f"the deck asked the internet for {asked}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "slides-lesson-04.png"))
    page.close()
