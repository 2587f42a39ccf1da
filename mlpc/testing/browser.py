"""Headless Chromium over the DevTools protocol (a pipe, no network): load a page, collect console errors, query it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-pipe"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    """Chromium could not be started or stopped answering."""


@dataclass
class PageResult:
    """What loading a page produced: console messages and uncaught exceptions by level, and query answers."""

    errors: list[str] = field(default_factory=list)    # console.error, uncaught exceptions, failed loads
    messages: list[str] = field(default_factory=list)  # every console message, any level
    values: dict[str, Any] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for, itself included


class _Pipe:
    """The DevTools protocol on file descriptors 3 (commands in) and 4 (replies out), NUL-separated JSON."""

    def __init__(self, exe: str, timeout: float) -> None:
        self.timeout = timeout
        cmd_r, self.cmd_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        self.profile = tempfile.mkdtemp(prefix="mlpc-chromium-")
        argv = [exe, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        wrapper = f'exec "$0" "$@" 3<&{cmd_r} 4>&{resp_w}'
        self.proc = subprocess.Popen(["bash", "-c", wrapper, *argv], pass_fds=(cmd_r, resp_w),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(resp_w)
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        want = self.next_id
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == want:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, deadline: float) -> dict[str, Any]:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            e = self._read(deadline)
            if e.get("method") == method:
                return e
            self.events.append(e)

    def _read(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"Chromium did not answer within {self.timeout} s")
            ready, _, _ = select.select([self.resp_r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.resp_r, 1 << 16)
            if not chunk:
                raise BrowserError(f"Chromium exited (code {self.proc.poll()})")
            self.buf += chunk
        raw, _, self.buf = self.buf.partition(b"\0")
        return dict(json.loads(raw))

    def close(self) -> None:
        try:
            os.write(self.cmd_w, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.cmd_w, self.resp_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


def load_page(path: str, queries: dict[str, str] | None = None, timeout: float = 60.0,
              screenshot: str | None = None, width: int = 1400, height: int = 2000) -> PageResult:
    """Open `path` (a local file) in headless Chromium, wait for load, run JavaScript `queries`
    (name -> expression, JSON-serializable results), optionally save a PNG screenshot."""
    exe = find_chromium()
    if exe is None:
        raise BrowserError("no Chromium on PATH (scripts/setup.d/chromium.sh installs Debian's package)")
    pipe = _Pipe(exe, timeout)
    result = PageResult()
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            pipe.send(f"{domain}.enable", session=session)
        pipe.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        url = "file://" + os.path.abspath(path)
        nav = pipe.send("Page.navigate", {"url": url}, session=session)
        if nav.get("errorText"):
            raise BrowserError(f"cannot open {url}: {nav['errorText']}")
        pipe.wait_event("Page.loadEventFired", time.monotonic() + timeout)
        for name, expr in (queries or {}).items():
            r = pipe.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=session)
            if "exceptionDetails" in r:
                result.errors.append(f"query {name} threw: {r['exceptionDetails'].get('text')}")
            result.values[name] = r.get("result", {}).get("value")
        if screenshot:
            import base64

            shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=session)
            with open(screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
        _collect(pipe.events, result)
    finally:
        pipe.close()
    return result


def _collect(events: list[dict[str, Any]], result: PageResult) -> None:
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            result.messages.append(f"console.{p.get('type')}: {text}")
            if p.get("type") in ("error", "assert"):
                result.errors.append(f"console.{p.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            desc = d.get("exception", {}).get("description") or d.get("text", "")
            result.errors.append(f"uncaught exception at line {d.get('lineNumber')}: {desc}")
        elif method == "Network.requestWillBeSent":
            result.requests.append(str(p.get("request", {}).get("url", "")))
        elif method == "Log.entryAdded":
            entry = p.get("entry", {})
            result.messages.append(f"log.{entry.get('level')}: {entry.get('text')}")
            if entry.get("level") == "error":
                result.errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
