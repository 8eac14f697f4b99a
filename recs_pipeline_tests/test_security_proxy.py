"""deploy/Caddyfile in front of a real dagster-webserver: what another web page can no longer do.

The webserver runs a GraphQL mutation from a GET's query string or a form POST and accepts any
``Host``; the proxy must refuse those (and foreign origins) before basic auth, and pass the UI's
own requests. Needs the ``caddy`` binary (the compose file runs the official image); skipped
without it.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin, Subprotocol

CADDYFILE = Path(__file__).resolve().parent.parent / "deploy" / "Caddyfile"
CADDY = shutil.which("caddy")
pytestmark = pytest.mark.skipif(CADDY is None, reason="needs the caddy binary")

DEFINITIONS = '''
import dagster as dg

@dg.asset
def canary() -> None:
    """Materialised only if a launch gets through."""

defs = dg.Definitions(assets=[canary])
'''
# What the cross-site page sent: a run launch, in a query string.
MUTATION = (
    "mutation { launchRun(executionParams: {selector: {repositoryLocationName: "
    '"tiny.py", repositoryName: "__repository__", jobName: "__ASSET_JOB"}}) { __typename } }'
)
QUERY = "query { version }"
GRAPHQL_WS = Subprotocol("graphql-ws")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args} exited with {process.returncode}"
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.3)
    raise TimeoutError(url)


@dataclass
class Proxy:
    base: str
    hostport: str
    auth: dict[str, str]
    direct: str


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    assert CADDY is not None
    root = tmp_path_factory.mktemp("proxy")
    (root / "tiny.py").write_text(DEFINITIONS)
    home = root / "home"
    home.mkdir()
    web_port, proxy_port, health_port = _free_port(), _free_port(), _free_port()
    password_hash = (
        subprocess.run(
            [CADDY, "hash-password", "--plaintext", "s3cret"], check=True, capture_output=True
        )
        .stdout.decode()
        .strip()
    )
    env = dict(os.environ, DAGSTER_HOME=str(home))
    webserver = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            *("-h", "127.0.0.1", "-p", str(web_port), "-f", str(root / "tiny.py")),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    caddy_env = dict(
        os.environ,
        RECS_UI_HOSTS="127.0.0.1 localhost",
        RECS_UI_USER="admin",
        RECS_UI_PASSWORD_HASH=password_hash,
        RECS_UI_UPSTREAM=f"127.0.0.1:{web_port}",
        RECS_UI_HEALTH=f"127.0.0.1:{health_port}",
        HOME=str(root),
        XDG_DATA_HOME=str(root),
        XDG_CONFIG_HOME=str(root),
    )
    config = root / "Caddyfile"
    config.write_text(CADDYFILE.read_text().replace(":8080 {", f":{proxy_port} {{"))
    caddy = subprocess.Popen(
        [CADDY, "run", "--config", str(config), "--adapter", "caddyfile"],
        env=caddy_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(f"http://127.0.0.1:{web_port}/server_info", webserver)
        _wait(f"http://127.0.0.1:{health_port}/", caddy)
        token = base64.b64encode(b"admin:s3cret").decode()
        yield Proxy(
            f"http://127.0.0.1:{proxy_port}",
            f"127.0.0.1:{proxy_port}",
            {"Authorization": f"Basic {token}"},
            f"http://127.0.0.1:{web_port}",
        )
    finally:
        for process in (caddy, webserver):
            process.terminate()
            process.wait(timeout=30)


def _launched(proxy: Proxy) -> bool:
    """Whether any run exists, asked of the webserver through the proxy as the UI would."""
    response = httpx.post(
        f"{proxy.base}/graphql",
        json={"query": "query { runsOrError { ... on Runs { count } } }"},
        headers={**proxy.auth, "Origin": proxy.base},
    )
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["runsOrError"]["count"]) > 0


def test_the_uis_own_requests_pass_with_credentials(proxy: Proxy) -> None:
    page = httpx.get(f"{proxy.base}/", headers={**proxy.auth, "Sec-Fetch-Site": "none"})
    assert page.status_code == 200 and "<html" in page.text.lower()
    same_origin = {**proxy.auth, "Origin": proxy.base, "Sec-Fetch-Site": "same-origin"}
    answer = httpx.post(f"{proxy.base}/graphql", json={"query": QUERY}, headers=same_origin)
    assert answer.status_code == 200 and answer.json()["data"]["version"]
    assert not _launched(proxy)


def test_no_credentials_no_ui(proxy: Proxy) -> None:
    assert httpx.get(f"{proxy.base}/").status_code == 401
    wrong = base64.b64encode(b"admin:guess").decode()
    answer = httpx.post(
        f"{proxy.base}/graphql",
        json={"query": QUERY},
        headers={"Authorization": f"Basic {wrong}"},
    )
    assert answer.status_code == 401


@pytest.mark.parametrize(
    ("name", "method", "headers", "body", "status"),
    [
        # DNS rebinding: the attacker's name resolving to us (credentials do not help).
        ("foreign host", "POST", {"Host": "evil.example"}, "json", 421),
        ("foreign host, same port", "POST", {"Host": "evil.example:3000"}, "json", 421),
        # <img src="http://127.0.0.1:3000/graphql?query=mutation...">
        ("mutation as GET", "GET", {}, "query-string", 405),
        # <form method=post action="http://127.0.0.1:3000/graphql?query=mutation...">
        ("form POST", "POST", {"Content-Type": "application/x-www-form-urlencoded"}, "form", 415),
        ("foreign Origin", "POST", {"Origin": "http://evil.example"}, "json", 403),
        ("null Origin", "POST", {"Origin": "null"}, "json", 403),
        ("cross-site fetch", "POST", {"Sec-Fetch-Site": "cross-site"}, "json", 403),
    ],
)
def test_what_another_page_sends_is_refused(
    proxy: Proxy, name: str, method: str, headers: dict[str, str], body: str, status: int
) -> None:
    # With the reader's cached credentials: a browser resends them to the UI's origin.
    sent = {**proxy.auth, **headers}
    url = f"{proxy.base}/graphql"
    if body == "query-string":
        response = httpx.request(method, f"{url}?{urlencode({'query': MUTATION})}", headers=sent)
    elif body == "form":
        response = httpx.request(
            method, f"{url}?{urlencode({'query': MUTATION})}", headers=sent, content=b"x=1"
        )
    else:
        response = httpx.request(method, url, headers=sent, json={"query": MUTATION})
    assert response.status_code == status, (name, response.status_code, response.text[:200])
    assert not _launched(proxy), name


def test_without_the_proxy_a_query_string_get_runs_graphql(proxy: Proxy) -> None:
    """The hole the proxy closes: the webserver itself executes GraphQL from a GET's URL."""
    url = f"/graphql?{urlencode({'query': QUERY})}"
    direct = httpx.get(f"{proxy.direct}{url}")
    assert direct.status_code == 200 and direct.json()["data"]["version"]
    assert httpx.get(f"{proxy.base}{url}", headers=proxy.auth).status_code == 405


def test_a_websocket_from_another_origin_is_refused(proxy: Proxy) -> None:
    """Browsers open cross-site websockets freely (with the cached credentials) but say Origin."""
    url = f"ws://{proxy.hostport}/graphql"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin=Origin("http://evil.example"), additional_headers=proxy.auth)
    assert refused.value.response.status_code == 403
    with connect(
        url, origin=Origin(proxy.base), additional_headers=proxy.auth, subprotocols=[GRAPHQL_WS]
    ) as same_origin:
        assert same_origin.subprotocol == GRAPHQL_WS
