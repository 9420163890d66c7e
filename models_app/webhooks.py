"""Webhook plumbing: secret encryption, request signing, and SSRF-safe HTTP delivery.

Kept apart from the services so the rules about *where* we may send requests live in one place.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ValidationError


def _fernet() -> Fernet:
    material = settings.MODELYARD_ENCRYPTION_KEY or settings.SECRET_KEY
    key = base64.urlsafe_b64encode(hashlib.sha256(("modelyard-webhooks:" + material).encode()).digest())
    return Fernet(key)


def encrypt_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:  # the key changed: re-enter the secret
        raise ValueError("webhook secret cannot be decrypted with the current key") from exc


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` HMAC over ``timestamp + "." + body`` (receivers recompute and compare)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress._BaseAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _forbidden(ip: ipaddress._BaseAddress) -> bool:
    """Anything but a globally routable unicast address, including IPv4 wrapped in IPv6.

    ``is_global`` also covers what ``is_private`` misses, such as 100.64.0.0/10 (carrier-grade
    NAT, used for internal services by some clouds).
    """
    inner = _embedded_ipv4(ip)
    if inner is not None and _forbidden(inner):
        return True
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified


def resolve_public(url: str) -> tuple[str, int, str, str]:
    """``(scheme, port, host, ip)`` for a URL whose host resolves only to public addresses.

    Loopback, private, link-local (169.254.169.254: cloud metadata) and other special ranges
    are refused unless ``MODELYARD_WEBHOOK_ALLOW_PRIVATE`` is set (tests, on-prem receivers).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError({"url": "Use an http(s) URL with a host name."})
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValidationError({"url": f"The host '{parts.hostname}' does not resolve."}) from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not settings.MODELYARD_WEBHOOK_ALLOW_PRIVATE and any(_forbidden(ip) for ip in addresses):
        raise ValidationError(
            {"url": "Webhook URLs may not point at loopback, private, link-local or reserved addresses."}
        )
    return parts.scheme, port, parts.hostname, str(addresses[0])


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address we checked, not to whatever the name resolves to a moment later."""

    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        raw = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


@dataclass
class PostResult:
    status_code: int | None
    duration_ms: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> PostResult:
    """POST ``body``; never raises for network or HTTP errors (they are results to log)."""
    started = time.monotonic()
    try:
        scheme, port, host, ip = resolve_public(url)
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn_class = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
        conn = conn_class(host, port, ip, timeout)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read(64 * 1024)  # drain a little; the body is not stored
            code = response.status
        finally:
            conn.close()
        return PostResult(code, int((time.monotonic() - started) * 1000))
    except ValidationError as exc:
        return PostResult(None, int((time.monotonic() - started) * 1000), "; ".join(exc.messages))
    except (OSError, http.client.HTTPException) as exc:
        return PostResult(
            None, int((time.monotonic() - started) * 1000), f"{type(exc).__name__}: {exc}"[:500]
        )
