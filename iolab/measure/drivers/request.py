"""The spec as it travels to the builtin driver's child (JSON), and the request it sends (bytes).

Shared by the parent (``builtin.py``) and the child (``builtin_child.py``), and kept free of heavy
imports because the child imports it before it starts timing anything.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any
from urllib.parse import urlsplit

from iolab import __version__
from iolab.errors import UsageError
from iolab.measure.drivers.base import LoadSpec


def spec_to_json(spec: LoadSpec) -> dict[str, Any]:
    data = dataclasses.asdict(spec)
    data["body"] = base64.b64encode(spec.body).decode()
    return data


def spec_from_json(data: dict[str, Any]) -> LoadSpec:
    data = dict(data)
    data["body"] = base64.b64decode(data.get("body", ""))
    data["headers"] = tuple((str(k), str(v)) for k, v in data.get("headers", ()))
    if data.get("cpus") is not None:
        data["cpus"] = tuple(int(c) for c in data["cpus"])
    return LoadSpec(**data)


def encode_request(spec: LoadSpec) -> tuple[str, int, bytes]:
    """(host, port, the request's bytes), encoded once for the whole run. Raises ``UsageError``."""
    parts = urlsplit(spec.url)
    if parts.scheme != "http":
        raise UsageError(f"the builtin driver speaks plain http:// only (got {spec.url!r})")
    try:
        host, port = parts.hostname, parts.port or 80
    except ValueError as exc:
        raise UsageError(f"bad URL {spec.url!r}: {exc}") from None
    if not host:
        raise UsageError(f"bad URL {spec.url!r}: no host")
    if spec.method.upper() == "HEAD":  # httptools cannot be told that a HEAD response has no body
        raise UsageError("the builtin driver cannot send HEAD requests")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    given = {name.lower() for name, _ in spec.headers}
    headers = list(spec.headers)
    defaults = {
        "host": parts.netloc.rpartition("@")[2],
        "user-agent": f"iolab/{__version__}",
        "accept": "*/*",
        # Without keep-alive we ask the server to close, as ab's HTTP/1.0 requests do.
        "connection": "keep-alive" if spec.keepalive else "close",
    }
    if spec.body or spec.method.upper() in ("POST", "PUT", "PATCH"):
        defaults["content-length"] = str(len(spec.body))
    headers += [(name.title(), value) for name, value in defaults.items() if name not in given]
    head = f"{spec.method.upper()} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    try:
        return host, port, (head + "\r\n").encode("latin-1") + spec.body
    except UnicodeEncodeError as exc:
        raise UsageError(f"the request cannot be encoded as HTTP/1.1: {exc}") from None
