"""Headless Chromium for the tests that check a page renders: the DOM after rendering and a
screenshot. Debian's `chromium` package (`make setup-browser` installs it; the tests install
nothing themselves) and skips with the reason when it is absent.

Chromium is started with no network services, sync, first-run UI or GPU, and a profile in a
temporary folder, so a run leaves nothing behind and fetches nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--hide-scrollbars")


def chromium() -> str:
    """The Chromium binary; skips the calling test (with why and how) when there is none."""
    for path in (os.environ.get("CHROMIUM"), *CANDIDATES, shutil.which("chromium")):
        if path and os.access(path, os.X_OK):
            return path
    pytest.skip("headless Chromium is not installed (/usr/bin/chromium): `make setup-browser` "
                "installs Debian's chromium package (as root, with apt-get)")


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout, check=True)


def dump_dom(page: Path, timeout: float = 120) -> str:
    """The page's DOM as Chromium serialises it after loading (and running any script)."""
    return _run(["--dump-dom", page.resolve().as_uri()], timeout).stdout


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 4000,
               timeout: float = 120) -> Path:
    """A PNG of the page's first `height` pixels at `width`."""
    _run([f"--screenshot={png}", f"--window-size={width},{height}",
          page.resolve().as_uri()], timeout)
    return png


SECTION = re.compile(r'<section id="([\w-]+)"[^>]*>(.*?)</section>', re.S)


def sections(page: str) -> dict[str, str]:
    """{section id: its inner HTML} of a bertpipe HTML report (sections are not nested)."""
    return dict(SECTION.findall(page))


def text_of(fragment: str) -> str:
    """The visible text of an HTML fragment (tags dropped, entities kept)."""
    return " ".join(re.sub(r"<[^>]+>", " ", fragment).split())
