"""Picks a storage backend by URL scheme: `sqlite:///abs/path.db` (the default, embedded),
`etcd://HOST:PORT[,HOST:PORT...]` and `etcds://...` (etcd v3 over TLS, with the CA and client
certificate files passed as arguments), and `memory://` (unit tests only). An etcd URL may carry
`?prefix=/NAME` to keep this cluster's keys under a prefix of a shared etcd."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from kybern.storage.interface import Backend


def etcd_endpoints(url: str) -> list[str]:
    """The `host:port` members of an etcd URL (port 2379 when left out)."""
    netloc = urlparse(url).netloc
    out = []
    for part in netloc.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):  # [::1]:2379
            host, _, port = part.rpartition(":") if "]:" in part else (part, "", "")
        else:
            host, _, port = part.partition(":")
        if not host:
            raise ValueError(f"{url!r}: an endpoint has no host")
        if port and not port.isdigit():
            raise ValueError(f"{url!r}: bad port {port!r}")
        out.append(f"{host}:{port or 2379}")
    if not out:
        raise ValueError(f"{url!r}: give endpoints, e.g. etcd://127.0.0.1:2379")
    return out


def open_backend(
    url: str,
    *,
    etcd_cafile: str = "",
    etcd_certfile: str = "",
    etcd_keyfile: str = "",
) -> Backend:
    """Return an unstarted backend for `url`; raises ValueError with a hint for bad URLs."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        from kybern.storage import sqlite

        path = parsed.path
        if parsed.netloc:  # sqlite://relative/path.db
            path = parsed.netloc + path
        if not path:
            raise ValueError(f"{url!r}: give a file, e.g. sqlite:///var/lib/kybern/state.db")
        return sqlite.SqliteBackend(path)
    if parsed.scheme in ("etcd", "etcds"):
        from kybern.storage import etcd, etcd_client

        endpoints = etcd_endpoints(url)
        if parsed.path not in ("", "/"):
            raise ValueError(f"{url!r}: no path expected (use ?prefix=/NAME for a key prefix)")
        prefix = parse_qs(parsed.query).get("prefix", [""])[0].rstrip("/")
        if prefix and not prefix.startswith("/"):
            raise ValueError(f"{url!r}: the prefix must start with '/'")
        files = (etcd_cafile, etcd_certfile, etcd_keyfile)
        if bool(etcd_certfile) != bool(etcd_keyfile):
            raise ValueError("--etcd-certfile and --etcd-keyfile go together")
        tls = None
        if parsed.scheme == "etcds":
            tls = etcd_client.TlsFiles(*files)
        elif any(files):
            raise ValueError(f"{url!r}: TLS files were given; use etcds:// for TLS")
        return etcd.EtcdBackend(endpoints, tls=tls, key_prefix=prefix)
    if parsed.scheme == "memory":
        from kybern.storage import memory

        return memory.MemoryBackend()
    raise ValueError(
        f"unsupported datastore endpoint {url!r}: use sqlite:///PATH, etcd://HOST:PORT[,...] "
        "or etcds://HOST:PORT[,...] (memory:// for tests)"
    )
