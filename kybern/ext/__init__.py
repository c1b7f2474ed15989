"""kybern.ext — write an aggregated (extension) API server in a page of Python: declare
`Resource`s with async handlers (or back them by a `MemoryStore`), put them in a `Server` for one
group version, and `running(server, client)` serves them over TLS behind the API server's
aggregator (front-proxy authentication from the `extension-apiserver-authentication`
ConfigMap, discovery, OpenAPI v3, get/list with selectors, Tables, watch) and registers the
APIService. See examples/hello_apiserver.py and docs/aggregation.md."""

from kybern.ext.auth import AuthConfig, Authenticator, AuthError, User
from kybern.ext.registration import Registration, register, unregister
from kybern.ext.resources import Column, Context, MemoryStore, Obj, Resource
from kybern.ext.serve import running
from kybern.ext.server import USER_KEY, Server
from kybern.ext.tls import ServingCert, self_signed, service_names

__all__ = [
    "USER_KEY",
    "AuthConfig",
    "AuthError",
    "Authenticator",
    "Column",
    "Context",
    "MemoryStore",
    "Obj",
    "Registration",
    "Resource",
    "Server",
    "ServingCert",
    "User",
    "register",
    "running",
    "self_signed",
    "service_names",
    "unregister",
]
