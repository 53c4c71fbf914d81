"""Building python-etcd clients from felix's EtcdEndpoints / TLS config."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import etcd

_log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str   # IPv6 literals keep their brackets: python-etcd formats "%s://%s:%d"
    port: int

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_endpoint(url: str) -> Endpoint:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"bad etcd endpoint {url!r}: want scheme://host:port")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or 2379
    return Endpoint(parts.scheme, host, port)


def parse_endpoints(endpoints: list[str]) -> list[Endpoint]:
    parsed = [parse_endpoint(e) for e in endpoints if e.strip()]
    if not parsed:
        raise ValueError("no etcd endpoints given")
    if len({e.scheme for e in parsed}) > 1:
        # python-etcd keeps one protocol per client.
        raise ValueError(f"etcd endpoints mix http and https: {endpoints}")
    return parsed


def _tls_kwargs(ca_file: str | None, cert_file: str | None,
                key_file: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if cert_file and key_file:
        kwargs["cert"] = (cert_file, key_file)
    elif cert_file:
        kwargs["cert"] = cert_file
    elif key_file:
        raise ValueError("EtcdKeyFile given without EtcdCertFile")
    if ca_file:
        kwargs["ca_cert"] = ca_file
    return kwargs


def client_for_endpoint(endpoint: Endpoint, *, ca_file: str | None = None,
                        cert_file: str | None = None, key_file: str | None = None,
                        timeout: float = DEFAULT_TIMEOUT) -> etcd.Client:
    """One client bound to one endpoint; construction does no I/O."""
    return etcd.Client(host=endpoint.host, port=endpoint.port, protocol=endpoint.scheme,
                       read_timeout=timeout, allow_redirect=True,
                       **_tls_kwargs(ca_file, cert_file, key_file))


class _RotatingClient(etcd.Client):  # type: ignore[misc]
    """A client over several endpoints that fails over on every request, forever.

    python-etcd's own failover discovers members over the network at construction time (which
    fails while etcd is down) and empties its endpoint list for good after one pass.  Here the
    list is fixed (proxy mode: no discovery) and refilled once a request has tried them all.
    """

    def __init__(self, urls: list[str], **kwargs: Any) -> None:
        self._all_urls = list(urls)
        super().__init__(**kwargs)

    def _next_server(self, cause: Exception | None = None) -> str:
        if not self._machines_cache:
            # Tried them all for this request: fail it, but arm the list for the next one.
            self._machines_cache: list[str] = [
                u for u in self._all_urls if u != self._base_uri]
            raise etcd.EtcdConnectionFailed("No more machines in the cluster", cause=cause)
        mach: str = self._machines_cache.pop()
        _log.info("Trying next etcd endpoint %s", mach)
        return mach


def make_client(endpoints: list[str], *, ca_file: str | None = None,
                cert_file: str | None = None, key_file: str | None = None,
                timeout: float = DEFAULT_TIMEOUT) -> etcd.Client:
    """A python-etcd client for felix's own reads and writes (status reporting etc.)."""
    parsed = parse_endpoints(endpoints)
    if len(parsed) == 1:
        return client_for_endpoint(parsed[0], ca_file=ca_file, cert_file=cert_file,
                                   key_file=key_file, timeout=timeout)
    return _RotatingClient(
        [e.url for e in parsed],
        host=tuple((e.host, e.port) for e in parsed), protocol=parsed[0].scheme,
        read_timeout=timeout, allow_reconnect=True, use_proxies=True,
        **_tls_kwargs(ca_file, cert_file, key_file))
