"""Headless Chromium for the tests that render a page: the browser, its flags for an offline
run, and the rule when it is missing (a failure under CI, which installs it; a skip elsewhere)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def chromium() -> str:
    """The Chromium executable; fails the test under CI=true when there is none, skips it elsewhere."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        message = "no Chromium on this machine (.ci/run installs Debian's chromium); the page was not rendered"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def headless(profile: Path, height: int) -> list[str]:
    """The command that renders a page offline at 1,280 px wide: no network, no GPU, a fresh
    profile, ten seconds of virtual time for the page's scripts."""
    return [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        f"--window-size=1280,{height}",
    ]
