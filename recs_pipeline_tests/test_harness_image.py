"""scripts/build_image.sh builds the image with buildah and loads the definitions inside it; that
takes minutes (see the README's "Container image"), so the suite only checks that the script
parses, and passes shellcheck where shellcheck is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "scripts/build_image.sh"


def test_image_build_script_is_valid_bash() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    parsed = subprocess.run([bash, "-n", SCRIPT], cwd=ROOT, capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    shellcheck = shutil.which("shellcheck")
    if shellcheck is not None:
        checked = subprocess.run([shellcheck, SCRIPT], cwd=ROOT, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout


def test_the_dockerfile_builds_from_a_configurable_base() -> None:
    """The script passes BASE_IMAGE and UV_IMAGE; the registry images stay the defaults."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in dockerfile
    assert "ARG UV_IMAGE=ghcr.io/astral-sh/uv:" in dockerfile
    assert dockerfile.count("FROM ${BASE_IMAGE} AS") == 2
    # Debian 12's buildah refuses relative bind-mount targets.
    assert "target=uv.lock" not in dockerfile and "target=/app/uv.lock" in dockerfile
