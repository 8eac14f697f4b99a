"""Headless Chromium for UI tests: Debian's ``chromium`` driven by PyPI ``playwright``.

Playwright's own browser download (``playwright install``) is never used: the test drives the
system's chromium (``RECS_CHROMIUM``, else ``/usr/bin/chromium``, else ``chromium`` on PATH).
Without one the UI tests skip and say how to get it, unless ``RECS_REQUIRE_BROWSER=1`` (CI sets
it), where a missing browser is a failure: a UI test that silently skips in CI proves nothing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

HOW_TO_GET_CHROMIUM = (
    "The UI tests need Debian's chromium: `apt-get install -y --no-install-recommends chromium` "
    "(or point RECS_CHROMIUM at a Chromium binary). Never `playwright install`: the tests drive "
    "the system's browser."
)

# Flags that work on these machines (headless, root, no GPU, no network beyond loopback).
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Dagster's "Join the community" dialog opens on 127.0.0.1 unless it was dismissed once.
DISMISS_COMMUNITY_DIALOG = 'window.localStorage.setItem("communityNux", JSON.stringify("1"))'

# The data a Dagster metadata plot draws: the canvas has no accessible text, so read the props
# of the React component that renders it (``{xAxis: "partition" | "time", values: [{x, y}]}``).
PLOT_VALUES_JS = """(canvas) => {
  const key = Object.keys(canvas).find((k) => k.startsWith('__reactFiber$'));
  if (!key) return null;
  for (let fiber = canvas[key]; fiber; fiber = fiber.return) {
    const data = fiber.memoizedProps && fiber.memoizedProps.data;
    if (data && data.xAxis && Array.isArray(data.values)) {
      return {
        xAxis: data.xAxis,
        values: data.values.map((v) => [String(v.x), Number.isFinite(v.y) ? v.y : null]),
      };
    }
  }
  return null;
}"""


def _required() -> bool:
    return os.environ.get("RECS_REQUIRE_BROWSER", "") not in ("", "0")


def _missing(reason: str) -> None:
    message = f"{reason}. {HOW_TO_GET_CHROMIUM}"
    if _required():
        pytest.fail(f"RECS_REQUIRE_BROWSER=1 and {message}")
    pytest.skip(message)


def find_chromium() -> str | None:
    configured = os.environ.get("RECS_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def require_chromium() -> str:
    """The browser's path, or a skip (a failure with RECS_REQUIRE_BROWSER=1) saying why."""
    if importlib.util.find_spec("playwright") is None:
        _missing("the `playwright` package is not installed (a dev dependency: `make install`)")
    path = find_chromium()
    if path is None:
        where = os.environ.get("RECS_CHROMIUM") or "/usr/bin/chromium (or chromium on PATH)"
        _missing(f"no chromium at {where}")
    assert path is not None
    return path


def launch(playwright: Any, executable: str) -> Any:
    """A headless browser with a fresh profile (Playwright makes a temporary user-data-dir)."""
    return playwright.chromium.launch(
        executable_path=executable, headless=True, args=LAUNCH_ARGS, timeout=60_000
    )
