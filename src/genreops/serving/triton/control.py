"""Model control and readiness over Triton's HTTP API, through tritonclient.http."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from genreops.serving.triton.errors import TritonModelError, TritonServerError

logger = logging.getLogger(__name__)


# --- Triton's HTTP API, through tritonclient.http -----------------------------------------
#
# tritonclient.http (over geventhttpclient) never consults HTTP_PROXY/HTTPS_PROXY/NO_PROXY:
# geventhttpclient goes through a proxy only when given ``proxy_host``, which tritonclient
# never passes, so these loopback calls cannot be routed via a proxy. One client per call
# (they are cheap, and gevent's hub is per thread: the watchdog calls from its own thread).

_T = TypeVar("_T")

# Triton's empty-body error, as tritonclient words it; reported as "(no message)" as before.
_EMPTY_ANSWER = "client received an empty response from the server."


def _base_url(url: str) -> str:
    """``host:port`` or an http(s) URL, as an http(s) URL without a trailing slash."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise TritonServerError(f"not an HTTP URL of a Triton server: {url}")
    return url


def _triton(url: str, timeout: float, call: Callable[[Any], _T]) -> _T:
    """``call(client)`` with a ``tritonclient.http.InferenceServerClient`` for ``url``.

    Triton's own error answers propagate as ``InferenceServerException``; a server that
    cannot be reached (refused, timed out, unresolvable) is a TritonServerError naming the URL.
    """
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    base = _base_url(url)
    parts = urllib.parse.urlsplit(base)
    client = None
    try:
        # tritonclient takes host:port[/path] without the scheme; https is its ``ssl`` flag
        client = httpclient.InferenceServerClient(
            parts.netloc + parts.path,
            connection_timeout=timeout,
            network_timeout=timeout,
            ssl=parts.scheme == "https",
        )
        return call(client)
    except InferenceServerException:
        raise
    except Exception as error:  # socket, DNS, TLS and parse errors of geventhttpclient
        raise TritonServerError(f"cannot reach Triton at {base}: {error}") from error
    finally:
        if client is not None:
            client.close()


def _error_text(error: Exception) -> str:
    """Triton's message from an ``InferenceServerException`` (its raw body when not JSON)."""
    details = getattr(error, "debug_details", lambda: None)()
    message = getattr(error, "message", lambda: str(error))()
    text = str(details) if details is not None else str(message or "")
    if text == _EMPTY_ANSWER:
        text = ""
    return text.strip().rstrip(";").strip() or "(no message)"


def load_model(url: str, name: str, *, timeout: float = 600.0) -> None:
    """Load (or reload, if changed) a model; TritonModelError carries Triton's message."""
    from tritonclient.utils import InferenceServerException

    try:
        _triton(url, timeout, lambda client: client.load_model(name))
    except InferenceServerException as error:
        raise TritonModelError(name, "load", _error_text(error), _base_url(url)) from error
    logger.info("Triton at %s loaded model %s", _base_url(url), name)


def restart_model_instances(url: str, model: str, *, timeout: float = 600.0) -> float:
    """Reload ``model`` with its current configuration plus a fresh parameter, so Triton
    builds new instances (a plain load of an unchanged model does nothing). Seconds taken."""
    from tritonclient.utils import InferenceServerException

    try:
        config = dict(_triton(url, 10.0, lambda client: client.get_model_config(model)))
        config.setdefault("parameters", {})["genreops_restart"] = {"string_value": uuid.uuid4().hex}
        started = time.monotonic()
        _triton(url, timeout, lambda client: client.load_model(model, config=json.dumps(config)))
    except InferenceServerException as error:
        raise TritonModelError(model, "restart", _error_text(error), _base_url(url)) from error
    return time.monotonic() - started


def unload_model(
    url: str, name: str, *, unload_dependents: bool = False, timeout: float = 120.0
) -> None:
    """Unload a model and wait until it is gone: in-flight requests done, ``finalize`` run.

    Triton answers at once and unloads in the background (state UNLOADING, ~1 s even for a
    trivial Python model while its stub shuts down).
    """
    from tritonclient.utils import InferenceServerException

    try:
        _triton(
            url,
            timeout,
            lambda client: client.unload_model(name, unload_dependents=unload_dependents),
        )
    except InferenceServerException as error:
        raise TritonModelError(name, "unload", _error_text(error), _base_url(url)) from error
    deadline = time.monotonic() + timeout
    while _model_states(url, name) & {"READY", "UNLOADING"}:
        if time.monotonic() > deadline:
            raise TritonModelError(
                name, "unload", f"still unloading after {timeout:.0f} s", _base_url(url)
            )
        time.sleep(0.1)
    logger.info("Triton at %s unloaded model %s", _base_url(url), name)


def _model_states(url: str, name: str) -> set[str]:
    return {str(e.get("state")) for e in repository_index(url) if e.get("name") == name}


def repository_index(url: str) -> list[dict[str, Any]]:
    """Every model of the repository with its ``state`` (absent: never loaded) and ``reason``."""
    from tritonclient.utils import InferenceServerException

    try:
        entries = _triton(url, 10.0, lambda client: client.get_model_repository_index())
    except InferenceServerException as error:
        raise TritonServerError(
            f"Triton at {_base_url(url)} cannot list its models: {_error_text(error)}"
        ) from error
    return [dict(entry) for entry in entries]


def is_ready(url: str, timeout: float = 2.0) -> bool:
    """True when the server answers ``/v2/health/ready`` with 200."""
    try:
        return bool(_triton(url, timeout, lambda client: client.is_server_ready()))
    except TritonServerError:
        return False


def model_ready(url: str, name: str, timeout: float = 2.0) -> bool:
    """True when some version of ``name`` is loaded and READY."""
    try:
        return bool(_triton(url, timeout, lambda client: client.is_model_ready(name)))
    except TritonServerError:
        return False
