"""Triton's HTTP helpers over tritonclient.http, against a stand-in server on loopback."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from genreops.serving.triton.control import (
    is_ready,
    load_model,
    model_ready,
    repository_index,
    restart_model_instances,
)
from genreops.serving.triton.errors import TritonModelError, TritonServerError

pytestmark = pytest.mark.unit


class _Triton(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, bytes]]] = []

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, b""))
        if self.path in ("/v2/health/ready", "/v2/models/add_one/ready"):
            self._answer(200, b"")
        elif self.path == "/v2/models/add_one/config":
            self._answer(200, json.dumps({"name": "add_one"}).encode())
        else:
            self._answer(400, json.dumps({"error": "no such model;"}).encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(("POST", self.path, body))
        if self.path == "/v2/repository/index":
            self._answer(200, json.dumps([{"name": "add_one", "state": "READY"}]).encode())
        elif self.path == "/v2/repository/models/add_one/load":
            self._answer(200, b"")
        elif self.path == "/v2/repository/models/plain/load":
            self._answer(400, b"not json at all")
        else:
            self._answer(400, json.dumps({"error": "failed to load 'broken'"}).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def triton() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Triton)
    _Triton.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """A listening "proxy" named by every proxy variable; it records what reaches it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    address = f"http://127.0.0.1:{listener.getsockname()[1]}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, address)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    reached: list[bytes] = []
    yield reached
    try:
        connection, _ = listener.accept()
        reached.append(connection.recv(1024))
        connection.close()
    except TimeoutError:
        pass
    listener.close()


def test_the_helpers_speak_to_triton_directly_never_via_a_proxy(
    triton: str, proxy: list[bytes]
) -> None:
    for url in (triton, f"http://{triton}", f"http://{triton}/"):
        assert is_ready(url)
    assert model_ready(triton, "add_one")
    assert not model_ready(triton, "other")
    assert repository_index(triton) == [{"name": "add_one", "state": "READY"}]
    load_model(triton, "add_one")
    assert restart_model_instances(triton, "add_one") >= 0
    restart = json.loads(_Triton.seen[-1][2])
    config = json.loads(restart["parameters"]["config"])
    assert config["name"] == "add_one" and "genreops_restart" in config["parameters"]
    assert not proxy


def test_tritons_refusals_keep_the_url_and_its_reason(triton: str) -> None:
    with pytest.raises(TritonModelError) as caught:
        load_model(triton, "broken")
    assert caught.value.reason == "failed to load 'broken'"
    assert caught.value.url == f"http://{triton}"
    with pytest.raises(TritonModelError, match="could not load model 'plain': not json at all"):
        load_model(triton, "plain")
    with pytest.raises(TritonModelError, match=r"could not restart model 'other': no such model$"):
        restart_model_instances(triton, "other")


def test_only_http_urls_are_taken() -> None:
    assert not is_ready("grpc://127.0.0.1:1")
    with pytest.raises(TritonServerError, match="not an HTTP URL"):
        repository_index("grpc://127.0.0.1:1")
