"""One place that turns a location (folder, ``file://`` or ``s3://`` URL) into a filesystem.

The lake, the model store and the event sources all read and write through ``pyarrow.fs``, so a
location works the same on local disk and on any S3-compatible store. S3 settings come from the
standard AWS variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION`` / ``AWS_DEFAULT_REGION``), never from code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs


def s3_filesystem(environ: Mapping[str, str] | None = None) -> pafs.S3FileSystem:
    """An S3 filesystem configured from the environment (endpoint, keys, region)."""
    env = os.environ if environ is None else environ
    options: dict[str, object] = {
        "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
    }
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        parsed = urlparse(endpoint)
        options["endpoint_override"] = parsed.netloc or parsed.path
        options["scheme"] = parsed.scheme or "https"
    if env.get("AWS_ACCESS_KEY_ID"):
        options["access_key"] = env["AWS_ACCESS_KEY_ID"]
        options["secret_key"] = env.get("AWS_SECRET_ACCESS_KEY", "")
        if env.get("AWS_SESSION_TOKEN"):
            options["session_token"] = env["AWS_SESSION_TOKEN"]
    return pafs.S3FileSystem(**options)


def resolve(location: str, environ: Mapping[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path inside it for a folder path or a URL.

    Relative folders are taken from the current directory; ``s3://bucket/prefix`` becomes the
    path ``bucket/prefix`` on an S3 filesystem.
    """
    parsed = urlparse(location)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"{location!r}: an s3:// URL needs a bucket")
        return s3_filesystem(environ), f"{parsed.netloc}{parsed.path}".rstrip("/")
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
        folder = Path(parsed.path if parsed.scheme == "file" else location).expanduser()
        return pafs.LocalFileSystem(), folder.absolute().as_posix()
    raise ValueError(
        f"{location!r}: unsupported location (use a folder, file:// or s3://bucket/prefix)"
    )
