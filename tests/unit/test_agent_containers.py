"""The agent's pure translation of pod specs into CRI configs: `$(VAR)` expansion, service link
variables, `valueFrom` and `envFrom`, the ContainerConfig (command/args, labels and annotations,
resources as CPU shares/quota and memory limit, OOM score, security context, mounts with subPath,
/etc/hosts and the termination message file), and the sandbox config (hostname, DNS by policy,
host ports, cgroup parent by QoS class, sysctls) with the managed /etc/hosts."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from kybern.agent import containers, env, sandbox
from kybern.cri import api

Obj = dict[str, Any]


class Objects:
    def __init__(self, configmaps: dict[str, Obj], secrets: dict[str, Obj]) -> None:
        self.cms, self.secrets = configmaps, secrets

    def configmap(self, namespace: str, name: str) -> Obj | None:
        return self.cms.get(f"{namespace}/{name}")

    def secret(self, namespace: str, name: str) -> Obj | None:
        return self.secrets.get(f"{namespace}/{name}")


def pod(**spec: Any) -> Obj:
    c = {"name": "main", "image": "busybox"}
    c.update(spec.pop("container", {}))
    return {
        "metadata": {"name": "web", "namespace": "ns", "uid": "u-1", "labels": {"app": "w"}},
        "spec": {"nodeName": "n1", "containers": [c], **spec},
    }


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("$(A)", "1"),
        ("x$(A)y$(B)", "x1y2"),
        ("$$(A)", "$(A)"),
        ("$(MISSING)", "$(MISSING)"),
        ("$(A", "$(A"),
        ("$A", "$A"),
        ("a$", "a$"),
        ("$$$(A)", "$1"),
    ],
)
def test_expand(text: str, out: str) -> None:
    assert env.expand(text, {"A": "1", "B": "2"}) == out


def test_service_links() -> None:
    svcs = [
        {"metadata": {"name": "kubernetes", "namespace": "default"},
         "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]}},
        {"metadata": {"name": "my-db", "namespace": "ns"},
         "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 5432, "protocol": "TCP"}]}},
        {"metadata": {"name": "other", "namespace": "far"}, "spec": {"clusterIP": "10.9.9.9"}},
        {"metadata": {"name": "headless", "namespace": "ns"}, "spec": {"clusterIP": "None"}},
    ]  # fmt: skip
    got = env.service_env(pod(), svcs)
    assert got["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert got["KUBERNETES_SERVICE_PORT"] == "443"
    assert got["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert got["MY_DB_PORT"] == "tcp://10.96.0.9:5432"
    assert got["MY_DB_PORT_5432_TCP_ADDR"] == "10.96.0.9"
    assert not any(k.startswith(("OTHER_", "HEADLESS_")) for k in got)
    no_links = env.service_env(pod(enableServiceLinks=False), svcs)
    assert "MY_DB_SERVICE_HOST" not in no_links and "KUBERNETES_SERVICE_HOST" in no_links


def test_container_env_resolves_references_in_order() -> None:
    objs = Objects(
        {"ns/cfg": {"data": {"color": "blue", "BAD KEY": "x", "K": "v"}}},
        {"ns/pw": {"data": {"password": base64.b64encode(b"s3cret").decode()}}},
    )
    container = {
        "name": "main",
        "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "250m"}},
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"}],
        "env": [
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                               "divisor": "1Mi"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu",
                                                               "divisor": "1m"}}},
            {"name": "NODECPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "pw", "key": "password"}}},
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "none", "key": "k",
                                                              "optional": True}}},
            {"name": "MSG", "value": "$(NAME) is $(COLOR) at $(IP)"},
            {"name": "CM_K", "value": "override"},
        ],
    }  # fmt: skip
    p = pod(container=container)
    ctx = env.PodContext(["10.244.0.5"], ["192.0.2.1"], {"cpu": "4", "memory": "8Gi"})
    got = env.container_env(p, container, objs, ctx, {"SVC": "1"})
    d = dict(got)
    assert d["NAME"] == "web" and d["APP"] == "w" and d["IP"] == "10.244.0.5"
    assert d["HOST"] == "192.0.2.1" and d["MEM"] == "128" and d["CPU"] == "250"
    assert d["NODECPU"] == "4" and d["COLOR"] == "blue" and d["PW"] == "s3cret"
    assert "OPT" not in d and "CM_BAD KEY" not in d
    assert d["MSG"] == "web is blue at 10.244.0.5"
    assert d["CM_K"] == "override" and d["CM_color"] == "blue" and d["SVC"] == "1"
    keys = [k for k, _ in got]
    assert keys.index("SVC") < keys.index("CM_color") < keys.index("NAME")


@pytest.mark.parametrize(
    ("var", "message"),
    [
        ({"configMapKeyRef": {"name": "absent", "key": "k"}}, 'configmap "absent" not found'),
        ({"configMapKeyRef": {"name": "cfg", "key": "nope"}}, "couldn't find key nope"),
        ({"secretKeyRef": {"name": "absent", "key": "k"}}, 'secret "absent" not found'),
        ({"fieldRef": {"fieldPath": "spec.bogus"}}, "unsupported fieldRef"),
    ],
)
def test_missing_references_are_config_errors(var: Obj, message: str) -> None:
    objs = Objects({"ns/cfg": {"data": {"k": "v"}}}, {})
    container = {"name": "main", "env": [{"name": "X", "valueFrom": var}]}
    with pytest.raises(env.ConfigError, match=message):
        env.container_env(pod(container=container), container, objs, env.PodContext())


def test_container_config() -> None:
    container = {
        "name": "main",
        "image": "busybox:1",
        "command": ["sh", "-c"],
        "args": ["echo $(GREETING) $$(HOME)"],
        "workingDir": "/work",
        "tty": True,
        "ports": [{"containerPort": 80}],
        "resources": {"limits": {"cpu": "500m", "memory": "64Mi"},
                      "requests": {"cpu": "250m", "memory": "32Mi"}},
        "securityContext": {"runAsUser": 1000, "capabilities": {"add": ["NET_ADMIN"],
                                                                 "drop": ["ALL"]},
                            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
        "volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "sub"},
                         {"name": "cfg", "mountPath": "/etc/cfg"}],
    }  # fmt: skip
    p = pod(
        container=container,
        securityContext={"runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [5]},
        volumes=[{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
    )
    c = p["spec"]["containers"][0]
    mounts = containers.mounts(
        p,
        c,
        {"data": "/v/data", "cfg": "/v/cfg"},
        containers.PodFiles(etc_hosts="/pod/etc-hosts", termination_log="/pod/term"),
    )
    cfg = containers.container_config(
        p,
        c,
        containers.Inputs(
            restart_count=2,
            image="sha256:abc",
            env=[("GREETING", "hi")],
            mounts=mounts,
            memory_capacity=1024 * 1024 * 1024,
        ),
    )
    assert cfg.metadata.name == "main" and cfg.metadata.attempt == 2
    assert cfg.image.image == "sha256:abc" and cfg.image.user_specified_image == "busybox:1"
    assert list(cfg.command) == ["sh", "-c"] and list(cfg.args) == ["echo hi $(HOME)"]
    assert cfg.working_dir == "/work" and cfg.tty and cfg.log_path == "main/2.log"
    assert [(e.key, e.value) for e in cfg.envs] == [("GREETING", "hi")]
    assert cfg.labels["io.kubernetes.pod.uid"] == "u-1"
    assert cfg.labels["io.kubernetes.container.name"] == "main"
    assert cfg.annotations["io.kubernetes.container.restartCount"] == "2"
    assert cfg.annotations["io.kubernetes.container.hash"] == containers.container_hash(c)
    assert cfg.annotations["io.kubernetes.container.terminationMessagePath"] == (
        "/dev/termination-log"
    )
    res = cfg.linux.resources
    assert (res.cpu_shares, res.cpu_quota, res.cpu_period) == (256, 50_000, 100_000)
    assert res.memory_limit_in_bytes == 64 * 1024 * 1024
    assert res.oom_score_adj == 1000 - 1000 * 32 // 1024
    sc = cfg.linux.security_context
    assert sc.run_as_user.value == 1000 and sc.run_as_group.value == 3000
    assert list(sc.supplemental_groups) == [5, 2000]
    assert list(sc.capabilities.add_capabilities) == ["NET_ADMIN"]
    assert list(sc.capabilities.drop_capabilities) == ["ALL"]
    assert sc.readonly_rootfs and sc.no_new_privs and not sc.privileged
    assert sc.seccomp.profile_type == api.SecurityProfile.Unconfined
    assert "/proc/kcore" in sc.masked_paths
    got = [(m.container_path, m.host_path, m.readonly) for m in cfg.mounts]
    assert got == [
        ("/data", "/v/data/sub", False),
        ("/etc/cfg", "/v/cfg", True),
        ("/etc/hosts", "/pod/etc-hosts", False),
        ("/dev/termination-log", "/pod/term", False),
    ]


def test_resources_of_a_best_effort_and_a_guaranteed_container() -> None:
    be = pod()
    r = containers.linux_resources(be, be["spec"]["containers"][0], 1 << 30)
    assert (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes, r.oom_score_adj) == (2, 0, 0, 1000)
    lim = {"cpu": "2", "memory": "1Gi"}
    g = pod(container={"resources": {"limits": lim, "requests": lim}})
    r = containers.linux_resources(g, g["spec"]["containers"][0], 1 << 33)
    assert (r.cpu_shares, r.cpu_quota, r.oom_score_adj) == (2048, 200_000, -997)
    tiny = pod(container={"resources": {"limits": {"cpu": "1m"}}})
    assert containers.linux_resources(tiny, tiny["spec"]["containers"][0]).cpu_quota == 1000


def test_mount_errors() -> None:
    p = pod(volumes=[{"name": "v", "emptyDir": {}}])
    files = containers.PodFiles()
    with pytest.raises(containers.MountError, match="no such volume"):
        containers.mounts(p, {"volumeMounts": [{"name": "x", "mountPath": "/x"}]}, {}, files)
    bad = {"volumeMounts": [{"name": "v", "mountPath": "/x", "subPath": "../etc"}]}
    with pytest.raises(containers.MountError, match="subPath"):
        containers.mounts(p, bad, {"v": "/v"}, files)
    expr = {"volumeMounts": [{"name": "v", "mountPath": "/x", "subPathExpr": "$(POD)"}]}
    assert containers.mounts(p, expr, {"v": "/v"}, files, {"POD": "web"})[0].host_path == "/v/web"


def test_run_as_non_root() -> None:
    p = pod(securityContext={"runAsNonRoot": True})
    c = p["spec"]["containers"][0]
    containers.check_non_root(p, c, 1000, "")
    with pytest.raises(env.ConfigError, match="image will run as root"):
        containers.check_non_root(p, c, 0, "")
    with pytest.raises(env.ConfigError, match="non-numeric user"):
        containers.check_non_root(p, c, None, "nobody")
    p["spec"]["containers"][0]["securityContext"] = {"runAsUser": 0}
    with pytest.raises(env.ConfigError, match="breaks non-root policy"):
        containers.check_non_root(p, p["spec"]["containers"][0], 1000, "")
    containers.check_non_root(pod(), c, 0, "")  # no policy: anything goes


def test_hash_ignores_resources() -> None:
    a = {"name": "x", "image": "i", "resources": {"limits": {"cpu": "1"}}}
    b = {"name": "x", "image": "i"}
    assert containers.container_hash(a) == containers.container_hash(b)
    assert containers.container_hash({**b, "image": "j"}) != containers.container_hash(b)


# ---- sandbox -------------------------------------------------------------------------------


def test_sandbox_config() -> None:
    p = pod(
        hostname="h",
        subdomain="sub",
        container={"ports": [{"containerPort": 80, "hostPort": 8080},
                             {"containerPort": 53, "hostPort": 5353, "protocol": "UDP",
                              "hostIP": "127.0.0.1"},
                             {"containerPort": 9}]},
        securityContext={"sysctls": [{"name": "net.core.somaxconn", "value": "1024"}],
                         "runAsUser": 7},
    )  # fmt: skip
    cfg = sandbox.sandbox_config(
        p,
        sandbox.SandboxInputs(
            attempt=1,
            log_directory="/logs/ns_web_u-1",
            dns=sandbox.DNSSettings(cluster_dns=["10.96.0.10"], host_searches=["example.org"]),
            cgroup_root="/kyb",
        ),
    )
    assert (cfg.metadata.name, cfg.metadata.namespace, cfg.metadata.uid) == ("web", "ns", "u-1")
    assert cfg.metadata.attempt == 1 and cfg.hostname == "h"
    assert cfg.labels["io.kubernetes.pod.uid"] == "u-1" and cfg.labels["app"] == "w"
    assert [(m.container_port, m.host_port, m.protocol, m.host_ip) for m in cfg.port_mappings] == [
        (80, 8080, api.TCP, ""),
        (53, 5353, api.UDP, "127.0.0.1"),
    ]
    assert cfg.linux.cgroup_parent == "/kyb/kubepods/besteffort/podu-1"
    assert cfg.linux.sysctls == {"net.core.somaxconn": "1024"}
    assert cfg.linux.security_context.run_as_user.value == 7
    assert cfg.linux.security_context.namespace_options.network == api.POD
    dns = cfg.dns_config
    assert list(dns.servers) == ["10.96.0.10"]
    assert list(dns.searches) == [
        "ns.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
        "example.org",
    ]
    assert list(dns.options) == ["ndots:5"]


@pytest.mark.parametrize(
    ("spec", "servers", "searches", "options"),
    [
        ({}, ["192.0.2.53"], ["corp"], ["rotate"]),  # ClusterFirst without cluster DNS: Default
        ({"dnsPolicy": "Default"}, ["192.0.2.53"], ["corp"], ["rotate"]),
        ({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["a"],
                                             "options": [{"name": "ndots", "value": "2"},
                                                         {"name": "edns0"}]}},
         ["1.1.1.1"], ["a"], ["ndots:2", "edns0"]),
        ({"dnsPolicy": "Default", "dnsConfig": {"options": [{"name": "rotate"},
                                                            {"name": "ndots", "value": "1"}]}},
         ["192.0.2.53"], ["corp"], ["rotate", "ndots:1"]),
    ],
)  # fmt: skip
def test_dns_policies(
    spec: Obj, servers: list[str], searches: list[str], options: list[str]
) -> None:
    settings = sandbox.DNSSettings(
        host_servers=["192.0.2.53"], host_searches=["corp"], host_options=["rotate"]
    )
    d = sandbox.dns_config(pod(**spec), settings)
    assert (list(d.servers), list(d.searches), list(d.options)) == (servers, searches, options)


def test_host_network_dns_and_ports() -> None:
    settings = sandbox.DNSSettings(cluster_dns=["10.96.0.10"], host_servers=["192.0.2.53"])
    p = pod(hostNetwork=True, container={"ports": [{"containerPort": 80, "hostPort": 80}]})
    assert list(sandbox.dns_config(p, settings).servers) == ["192.0.2.53"]
    p["spec"]["dnsPolicy"] = "ClusterFirstWithHostNet"
    assert list(sandbox.dns_config(p, settings).servers) == ["10.96.0.10"]
    assert sandbox.port_mappings(p) == []
    cfg = sandbox.sandbox_config(p, sandbox.SandboxInputs())
    assert cfg.hostname == "" and cfg.linux.security_context.namespace_options.network == api.NODE


def test_resolv_conf_and_cgroup_parents() -> None:
    text = (
        "# c\nnameserver 192.0.2.1\nnameserver 192.0.2.2 ; x\nsearch a b\noptions ndots:2 rotate\n"
    )
    assert sandbox.parse_resolv_conf(text) == (["192.0.2.1", "192.0.2.2"], ["a", "b"],
                                               ["ndots:2", "rotate"])  # fmt: skip
    g = pod(container={"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}})
    b = pod(container={"resources": {"requests": {"cpu": "1"}}})
    assert sandbox.cgroup_parent(g) == "/kubepods/podu-1"
    assert sandbox.cgroup_parent(b, "/") == "/kubepods/burstable/podu-1"


def test_hosts_file() -> None:
    p = pod(hostname="db", subdomain="svc",
            hostAliases=[{"ip": "192.0.2.9", "hostnames": ["foo", "bar"]}])  # fmt: skip
    text = sandbox.hosts_file(p, ["10.244.0.7"], "cluster.local")
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert "10.244.0.7\tdb.svc.ns.svc.cluster.local\tdb\n" in text
    assert text.endswith("# Entries added by HostAliases.\n192.0.2.9\tfoo\tbar\n")
    hn = sandbox.hosts_file(pod(hostNetwork=True), [], "cluster.local", "127.0.0.1 me")
    assert hn == "# Kubernetes-managed hosts file (host network).\n127.0.0.1 me\n"


def test_cgroup_dirs_of_v1_and_v2(tmp_path: Path) -> None:
    v1 = tmp_path / "v1"
    for h in ("cpu", "memory"):
        (v1 / h / "kyb" / "kubepods" / "podx").mkdir(parents=True)
    assert sandbox.cgroup_dirs("/kyb/kubepods/podx", v1) == [
        v1 / "cpu/kyb/kubepods/podx",
        v1 / "memory/kyb/kubepods/podx",
    ]
    assert sandbox.remove_cgroup("/kyb/kubepods", v1) == []
    assert not (v1 / "cpu" / "kyb" / "kubepods").exists()
    sandbox.remove_if_empty("/kyb", v1)
    assert not (v1 / "memory" / "kyb").exists()
    v2 = tmp_path / "v2"
    (v2 / "kubepods" / "podx").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpu memory\n")
    assert sandbox.cgroup_dirs("/kubepods/podx", v2) == [v2 / "kubepods/podx"]
