"""Answered-not-stored APIs through the real kubectl: `auth can-i`, `auth whoami`,
`create token`, and the token authenticating a request."""

from __future__ import annotations

import json

from conftest import Server


def test_can_i_and_whoami(server: Server) -> None:
    assert server.kubectl("auth", "can-i", "create", "pods").stdout.strip() == "yes"
    who = server.kubectl("auth", "whoami", "-o", "json").stdout
    info = json.loads(who)["status"]["userInfo"]
    assert info["username"] == "kybern-admin"
    assert "system:masters" in info["groups"]


def test_service_account_token_authenticates(server: Server, ns: str) -> None:
    server.kubectl("-n", ns, "create", "serviceaccount", "bot")
    token = server.kubectl("-n", ns, "create", "token", "bot").stdout.strip()
    assert token.count(".") == 2
    s = server.http(authenticated=False)
    url = server.kubectl(
        "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"
    ).stdout.strip()
    assert s.get(f"{url}/api/v1/namespaces/{ns}").status_code == 401
    r = s.get(f"{url}/api/v1/namespaces/{ns}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["metadata"]["name"] == ns
    review = s.post(
        f"{url}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        headers={"Authorization": f"Bearer {token}"},
        json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    assert review.status_code == 201
    assert review.json()["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:bot"
    bad = s.get(
        f"{url}/api/v1/namespaces/{ns}", headers={"Authorization": f"Bearer {token[:-4]}AAAA"}
    )
    assert bad.status_code == 401 and bad.json()["reason"] == "Unauthorized"
