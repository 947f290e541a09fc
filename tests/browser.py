"""A real browser for tests: headless Chromium driven over the DevTools protocol.

``from browser import Browser, non_white_fraction`` (``tests/`` is on ``sys.path``); tests
get a :class:`Browser` (one per test module) from the ``browser`` fixture of
``tests/conftest.py``, which skips where Chromium is not installed and fails when
``CHAMBERD_REQUIRE_BROWSER=1`` (CI, set by ``.ci/run``).

How: Chromium is started with ``--remote-debugging-pipe`` and spoken to over two pipes
(the DevTools protocol's JSON messages, each ended by a NUL byte, on the child's file
descriptors 3 and 4), so no port is opened, no WebSocket client is needed and nothing
beyond the standard library (and Pillow, for decoding screenshots) is used. Every wait is
bounded. Background networking, component updates, sync and QUIC are switched off and the
profile is a fresh temporary folder, so the browser contacts no host; :class:`Page` also
records every request the page makes, so a test can check that a report loads nothing but
itself.

Typical use::

    page = browser.open(report_path)           # file://, waits for the load event
    images = page.images()                     # each scrolled into view and decoded
    assert all(i["naturalWidth"] > 0 for i in images)
    shot = page.screenshot()                   # PNG bytes of the viewport
    assert non_white_fraction(shot) > 0.02
    page.close()
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "CHROMIUM_FLAGS",
    "Browser",
    "BrowserError",
    "Page",
    "browser_session",
    "find_chromium",
    "non_white_fraction",
    "save_artifact",
]

#: Flags for a headless Chromium that contacts no host (as root in a container:
#: ``--no-sandbox``). The profile folder is added per browser.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--metrics-recording-only",
    "--hide-scrollbars",
    "--mute-audio",
)

#: Longest wait for any one answer of the browser [s].
TIMEOUT_S = 60.0


class BrowserError(AssertionError):
    """The browser did not answer, or answered with an error."""


def find_chromium() -> str | None:
    """The Chromium executable: ``CHAMBERD_CHROMIUM``, Debian's binary (not its shell
    wrapper, which adds extension flags), or ``chromium``/``chromium-browser``/
    ``google-chrome`` on PATH."""
    explicit = os.environ.get("CHAMBERD_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    debian = "/usr/lib/chromium/chromium"
    if os.access(debian, os.X_OK):
        return debian
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless Chromium process; :meth:`open` gives a :class:`Page` (a tab)."""

    def __init__(self, executable: str, *, timeout_s: float = TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._profile = tempfile.mkdtemp(prefix="chamberd-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def place_pipes() -> None:  # in the child: the protocol's descriptors 3 and 4
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        try:
            self.process = subprocess.Popen(
                [
                    executable,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={self._profile}",
                    "--remote-debugging-pipe",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                preexec_fn=place_pipes,
                close_fds=False,
                start_new_session=True,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        try:
            self.version = self.call("Browser.getVersion")["product"]
        except BaseException:
            self.close()
            raise

    # --- the protocol ----------------------------------------------------------------

    def _send(self, method: str, params: dict[str, Any] | None, session: str | None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._to_child, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise BrowserError(f"Chromium has exited: {self.stderr_tail()}") from None
        return self._next_id

    def _receive(self, timeout_s: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_child], [], [], timeout_s)
            if not ready:
                raise BrowserError(f"no answer from Chromium within {timeout_s:g} s")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium has exited: {self.stderr_tail()}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Send one command and wait for its result (events meanwhile are kept)."""
        wanted = self._send(method, params, session)
        while True:
            message = self._receive(timeout_s or self.timeout_s)
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self._events.append(message)

    def wait_event(
        self, method: str, *, session: str | None = None, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """The next event ``method`` (of ``session``), waiting at most ``timeout_s``."""
        for i, event in enumerate(self._events):
            if event["method"] == method and event.get("sessionId") == session:
                return self._events.pop(i)
        while True:
            message = self._receive(timeout_s or self.timeout_s)
            if message.get("method") == method and message.get("sessionId") == session:
                return message
            if "method" in message:
                self._events.append(message)

    def events(self, session: str | None = None) -> list[dict[str, Any]]:
        """Events received so far for ``session``, removed from the queue."""
        mine = [e for e in self._events if e.get("sessionId") == session]
        self._events = [e for e in self._events if e.get("sessionId") != session]
        return mine

    # --- pages ---------------------------------------------------------------------

    def open(self, target: str | os.PathLike[str], *, width: int = 1280, height: int = 900) -> Page:
        """A new tab showing ``target`` (a path, opened as ``file://``, or a URL), after its
        load event."""
        url = target if isinstance(target, str) and "://" in target else None
        if url is None:
            url = Path(target).resolve().as_uri()
        created = self.call("Target.createTarget", {"url": "about:blank"})
        session = self.call(
            "Target.attachToTarget", {"targetId": created["targetId"], "flatten": True}
        )["sessionId"]
        page = Page(self, created["targetId"], session)
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable", session=session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        answer = self.call("Page.navigate", {"url": url}, session=session)
        if answer.get("errorText"):
            raise BrowserError(f"cannot open {url}: {answer['errorText']}")
        self.wait_event("Page.loadEventFired", session=session)
        return page

    def stderr_tail(self, limit: int = 2000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-limit:]

    def close(self) -> None:
        """End the browser (politely, then by its process group) and remove its profile."""
        with contextlib.suppress(Exception):
            self.call("Browser.close", timeout_s=10)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._stderr.close()
        shutil.rmtree(self._profile, ignore_errors=True)


class Page:
    """One tab: evaluate JavaScript, check images, take screenshots."""

    def __init__(self, browser: Browser, target_id: str, session: str) -> None:
        self.browser = browser
        self.target_id = target_id
        self.session = session
        self._seen: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> dict:
        return self.browser.call(method, params, session=self.session, **kw)

    def evaluate(self, expression: str, *, timeout_s: float | None = None) -> Any:
        """The value of a JavaScript expression (promises are awaited)."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout_s=timeout_s,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def images(self, *, timeout_s: float | None = None) -> list[dict[str, Any]]:
        """Every ``<img>``, after scrolling each into view (lazy images load) and awaiting
        its decoding: ``complete``, ``naturalWidth``, ``naturalHeight``, ``alt``,
        ``scheme`` (of its ``src``) and ``error`` (the decode failure, or null)."""
        script = """(async () => {
            const out = [];
            for (const img of Array.from(document.images)) {
                img.scrollIntoView();
                let error = null;
                try { await img.decode(); } catch (e) { error = String(e); }
                out.push({complete: img.complete, naturalWidth: img.naturalWidth,
                          naturalHeight: img.naturalHeight, alt: img.alt,
                          scheme: img.currentSrc.split(':')[0], error: error});
            }
            window.scrollTo(0, 0);
            return out;
        })()"""
        return self.evaluate(script, timeout_s=timeout_s)

    def text(self) -> str:
        """The page's visible text."""
        return self.evaluate("document.body.innerText")

    def count(self, selector: str) -> int:
        return self.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length")

    def screenshot(self, *, selector: str | None = None) -> bytes:
        """A PNG of the viewport, or of the first element matching ``selector`` (scrolled
        into view)."""
        params: dict[str, Any] = {"format": "png"}
        if selector is not None:
            box = self.evaluate(
                f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
                    if (!e) return null; e.scrollIntoView();
                    const r = e.getBoundingClientRect();
                    return {{x: r.x + window.scrollX, y: r.y + window.scrollY,
                             width: r.width, height: r.height}}; }})()"""
            )
            if box is None or box["width"] < 1 or box["height"] < 1:
                raise BrowserError(f"nothing visible matches {selector!r}")
            params["clip"] = {**box, "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params)["data"]
        return base64.b64decode(data)

    def _drain(self) -> list[dict[str, Any]]:
        self._seen.extend(self.browser.events(self.session))
        return self._seen

    def requests(self) -> list[str]:
        """URLs of every request the page made so far (the page itself included)."""
        return [
            e["params"]["request"]["url"]
            for e in self._drain()
            if e["method"] == "Network.requestWillBeSent"
        ]

    def errors(self) -> list[str]:
        """JavaScript exceptions, console errors and browser log errors so far."""
        out = []
        for e in self._drain():
            if e["method"] == "Runtime.exceptionThrown":
                out.append(str(e["params"]["exceptionDetails"].get("text")))
            elif e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] == "error":
                out.append(" ".join(str(a.get("value")) for a in e["params"]["args"]))
            elif e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error":
                out.append(e["params"]["entry"]["text"])
        return out

    def close(self) -> None:
        with contextlib.suppress(BrowserError):
            self.browser.call("Target.closeTarget", {"targetId": self.target_id})


def non_white_fraction(png: bytes, *, threshold: int = 245) -> float:
    """Share of the pixels of a PNG darker than ``threshold`` (of 255) in grey level."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        grey = image.convert("L")
        histogram = grey.histogram()
    total = sum(histogram)
    return sum(histogram[:threshold]) / total if total else 0.0


def save_artifact(name: str, data: bytes) -> Path | None:
    """Keep ``data`` (a screenshot) in ``CHAMBERD_BROWSER_ARTIFACTS`` when that is set."""
    folder = os.environ.get("CHAMBERD_BROWSER_ARTIFACTS")
    if not folder:
        return None
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def browser_session() -> Iterator[Browser]:
    """The body of the ``browser`` fixture: a Browser, ended afterwards, or a skip (a
    failure with ``CHAMBERD_REQUIRE_BROWSER=1``) where Chromium is absent or does not
    start."""
    required = os.environ.get("CHAMBERD_REQUIRE_BROWSER") == "1"
    executable = find_chromium()
    if executable is None:
        message = "Chromium not found (apt-get install chromium, or set CHAMBERD_CHROMIUM)"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    try:
        browser = Browser(executable)
    except (BrowserError, OSError) as exc:
        message = f"Chromium ({executable}) does not start: {exc}"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield browser
    finally:
        browser.close()
