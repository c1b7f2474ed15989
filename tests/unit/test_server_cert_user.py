"""The user of a client certificate is read once per certificate dict (the one a connection's
TLS transport keeps from its handshake), exactly as `certs.user_from_cert` reads it, with a
groups list of its own per request; the memory of them is bounded."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kybern.apiserver import certs, server

_NAMES = st.text(max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    subject=st.lists(
        st.lists(
            st.tuples(st.sampled_from(["commonName", "organizationName", "countryName"]), _NAMES),
            min_size=1,
            max_size=2,
        ).map(tuple),
        max_size=4,
    ).map(tuple)
)
def test_cert_user_is_user_from_cert(subject: tuple[Any, ...]) -> None:
    cert = {"subject": subject, "serialNumber": "01"}
    want = certs.user_from_cert(cert)
    first = server.cert_user(cert)
    again = server.cert_user(cert)  # remembered
    assert first == want and again == want
    if first is not None and again is not None:
        assert first[1] is not again[1]  # a list of its own per request
        first[1].append("changed")
        assert server.cert_user(cert) == want
    other = {"subject": subject, "serialNumber": "02"}  # another dict: read again
    assert server.cert_user(other) == want


def test_cert_user_forgets_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "CERT_USERS_MAX", 3)
    monkeypatch.setattr(server, "_cert_users", {})
    kept = [{"subject": ((("commonName", f"u{i}"),),)} for i in range(10)]
    for c in kept:
        assert server.cert_user(c) == (c["subject"][0][0][1], ["system:authenticated"])
    assert len(server._cert_users) <= 3
