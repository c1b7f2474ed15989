"""The plugin contract of `kybern.cni`, checked through a real executable: the test plugin
(tests/e2e/cni_test_plugin.py) records the exact environment and stdin of every call. Covered:
the `CNI_*` environment per command, the stdin config with `name`/`cniVersion` injected,
`prevResult` chaining (ADD forward, CHECK forward, DEL in reverse), `runtimeConfig` filtered by
capabilities, VERSION asked once per binary, version negotiation, result conversion from a plugin
answering at another version, spec errors and other failures, timeouts and cancellation killing
the plugin, the cache across runtime instances, bounded and per-container-serialized
concurrency, and 1.1's STATUS and GC (including leftovers only a plugin knows about)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cni_helpers import install_test_plugin, read_calls, wait_for

from kybern import cni

NETNS = "/var/run/netns/kybern-cni-contract-not-used"  # the test plugin never enters it


class Plugins:
    """A bin dir of test plugins sharing one record file and one state dir."""

    def __init__(self, tmp: Path) -> None:
        self.bin = tmp / "bin"
        self.record = tmp / "calls.jsonl"
        self.state = tmp / "state"
        self.cache = tmp / "cache"

    def install(self, name: str, supported: list[str] | None = None) -> Path:
        return install_test_plugin(
            self.bin, name, record=self.record, state_dir=self.state, supported=supported
        )

    def calls(self, command: str | None = None) -> list[dict[str, Any]]:
        return [
            c
            for c in read_calls(self.record)
            if (command is None or c["command"] == command) and "end" not in c
        ]

    def clear(self) -> None:
        self.record.unlink(missing_ok=True)

    def states(self) -> set[str]:
        return {p.name for p in self.state.iterdir()} if self.state.is_dir() else set()

    def runtime(self, **kw: Any) -> cni.Runtime:
        kw.setdefault("timeout", 30)
        return cni.Runtime([self.bin], cache_dir=self.cache, **kw)


@pytest.fixture
def plugins(tmp_path: Path) -> Iterator[Plugins]:
    p = Plugins(tmp_path)
    for name in ("tp-a", "tp-b", "tp-c"):
        p.install(name)
    p.install("tp-old", supported=["0.3.1", "0.4.0"])
    yield p


def cni_env(call: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in call["env"].items() if k.startswith("CNI_")}


def net_of(conf: dict[str, Any]) -> cni.NetworkConfigList:
    return cni.config.parse(json.dumps(conf))


CHAIN = {
    "cniVersion": "1.0.0",
    "name": "contract",
    "plugins": [
        {"type": "tp-a", "name": "its-own-name", "addIP": "10.99.0.5/24", "custom": {"k": 1}},
        {"type": "tp-b", "capabilities": {"portMappings": True, "bandwidth": False}},
        {
            "type": "tp-c",
            "capabilities": {"bandwidth": True, "ips": True},
            "runtimeConfig": {"from": "the file"},
            "addIP": "fd00:99::5/64",
        },
    ],
}
CAPS = {
    "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
    "bandwidth": {"ingressRate": 1000, "ingressBurst": 100},
    "ips": ["10.99.0.9/24"],
    "mac": "c2:11:22:33:44:55",
}


async def test_env_stdin_prev_result_and_runtime_config(plugins: Plugins) -> None:
    env = {"PATH": os.environ["PATH"], "CNI_ARGS": "LEAKED=1", "CNI_STALE": "x", "OTHER": "kept"}
    runtime = plugins.runtime(env=env)
    net = net_of(CHAIN)
    rt = cni.RuntimeConf(
        container_id="ctr-1",
        netns=NETNS,
        ifname="net1",
        args=(("K8S_POD_NAME", "web"), ("IgnoreUnknown", "1")),
        capability_args=CAPS,
    )
    result = await runtime.add(net, rt)

    versions = plugins.calls("VERSION")
    assert sorted(c["argv0"] for c in versions) == ["tp-a", "tp-b", "tp-c"]
    for call in versions:
        assert cni_env(call) == {"CNI_COMMAND": "VERSION"}
        assert call["stdin"] == {"cniVersion": "1.1.0"}
    adds = plugins.calls("ADD")
    assert [c["argv0"] for c in adds] == ["tp-a", "tp-b", "tp-c"]
    expected_env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "ctr-1",
        "CNI_NETNS": NETNS,
        "CNI_IFNAME": "net1",
        "CNI_ARGS": "K8S_POD_NAME=web;IgnoreUnknown=1",
        "CNI_PATH": str(plugins.bin),
    }
    for call in adds:
        assert cni_env(call) == expected_env
        assert call["env"]["OTHER"] == "kept"
    a, b, c = (call["stdin"] for call in adds)
    raw = CHAIN["plugins"]
    result_a = {"cniVersion": "1.0.0", "ips": [{"address": "10.99.0.5/24"}]}
    assert a == {**raw[0], "name": "contract", "cniVersion": "1.0.0"}
    assert b == {
        **raw[1],
        "name": "contract",
        "cniVersion": "1.0.0",
        "prevResult": result_a,
        "runtimeConfig": {"portMappings": CAPS["portMappings"]},
    }
    assert c == {
        **raw[2],
        "name": "contract",
        "cniVersion": "1.0.0",
        "prevResult": result_a,
        "runtimeConfig": {"bandwidth": CAPS["bandwidth"], "ips": CAPS["ips"]},
    }
    assert result.to_json() == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.99.0.5/24"}, {"address": "fd00:99::5/64"}],
    }

    plugins.clear()
    await runtime.check(net, rt)
    checks = plugins.calls("CHECK")
    assert [x["argv0"] for x in checks] == ["tp-a", "tp-b", "tp-c"]
    assert all(x["stdin"]["prevResult"] == result.to_json() for x in checks)
    assert all(cni_env(x) == {**expected_env, "CNI_COMMAND": "CHECK"} for x in checks)

    plugins.clear()
    await runtime.delete(net, rt)
    dels = plugins.calls("DEL")
    assert [x["argv0"] for x in dels] == ["tp-c", "tp-b", "tp-a"]
    assert all(x["stdin"]["prevResult"] == result.to_json() for x in dels)
    assert all(cni_env(x) == {**expected_env, "CNI_COMMAND": "DEL"} for x in dels)
    assert dels[1]["stdin"]["runtimeConfig"] == {"portMappings": CAPS["portMappings"]}
    assert plugins.calls("VERSION") == [], "VERSION is asked once per binary"


async def test_version_is_asked_again_when_the_binary_changes(plugins: Plugins) -> None:
    runtime = plugins.runtime()
    net = net_of(CHAIN)
    await runtime.add(net, cni.RuntimeConf("v1", NETNS))
    await runtime.add(net, cni.RuntimeConf("v2", NETNS))
    assert len(plugins.calls("VERSION")) == 3
    plugins.clear()
    plugins.install("tp-b")  # the binary is replaced (new mtime)
    await runtime.add(net, cni.RuntimeConf("v3", NETNS))
    assert [c["argv0"] for c in plugins.calls("VERSION")] == ["tp-b"]


async def test_negotiation_with_a_plugin_that_speaks_only_0_4_0(plugins: Plugins) -> None:
    runtime = plugins.runtime()
    conf = {
        "cniVersion": "1.1.0",
        "cniVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"],
        "name": "nego",
        "plugins": [{"type": "tp-a", "addIP": "10.99.1.5/24"}, {"type": "tp-old"}],
    }
    net = net_of(conf)
    assert net.cni_version == "1.1.0"
    assert await runtime.negotiate(net) == "0.4.0"
    result = await runtime.add(net, cni.RuntimeConf("n1", NETNS))
    a, old = plugins.calls("ADD")
    assert a["stdin"]["cniVersion"] == old["stdin"]["cniVersion"] == "0.4.0"
    assert old["stdin"]["prevResult"] == {
        "cniVersion": "0.4.0",
        "ips": [{"version": "4", "address": "10.99.1.5/24"}],
        "dns": {},
    }
    assert result.cni_version == "0.4.0"
    await runtime.check(net, cni.RuntimeConf("n1", NETNS))
    await runtime.delete(net, cni.RuntimeConf("n1", NETNS))

    at_031 = net_of({**conf, "cniVersions": ["0.3.1", "1.0.0"], "cniVersion": "1.0.0"})
    assert await runtime.negotiate(at_031) == "0.3.1"
    await runtime.add(at_031, cni.RuntimeConf("n2", NETNS))
    with pytest.raises(cni.CNIError, match="does not support the CHECK command"):
        await runtime.check(at_031, cni.RuntimeConf("n2", NETNS))
    await runtime.delete(at_031, cni.RuntimeConf("n2", NETNS))

    plugins.clear()
    only_new = net_of({**conf, "cniVersions": ["1.0.0"]})
    with pytest.raises(cni.CNIError) as info:
        await runtime.add(only_new, cni.RuntimeConf("n3", NETNS))
    assert info.value.code == cni.Code.INCOMPATIBLE_VERSION
    assert info.value.plugin == "tp-old" and "0.4.0" in str(info.value)
    assert plugins.calls("ADD") == [], "nothing runs without a common version"


async def test_results_at_another_version_are_converted_for_the_chain(plugins: Plugins) -> None:
    runtime = plugins.runtime()
    conf = {
        "cniVersion": "1.0.0",
        "name": "conv",
        "plugins": [
            {"type": "tp-a", "addIP": "10.99.2.5/24", "resultVersion": "0.3.1"},
            {"type": "tp-b"},
        ],
    }
    result = await runtime.add(net_of(conf), cni.RuntimeConf("cv", NETNS))
    _, b = plugins.calls("ADD")
    assert b["stdin"]["prevResult"] == {"cniVersion": "1.0.0", "ips": [{"address": "10.99.2.5/24"}]}
    assert result.cni_version == "1.0.0"


async def test_plugin_errors_are_clear(plugins: Plugins) -> None:
    runtime = plugins.runtime()
    fail = {"code": 117, "msg": "quota exceeded", "details": "pool ipv4-a is full"}
    net = net_of(
        {
            "cniVersion": "1.0.0",
            "name": "errs",
            "plugins": [{"type": "tp-a"}, {"type": "tp-b", "fail": fail}],
        }
    )
    with pytest.raises(cni.CNIError) as info:
        await runtime.add(net, cni.RuntimeConf("e1", NETNS))
    e = info.value
    assert (e.code, e.msg, e.details) == (117, "quota exceeded", "pool ipv4-a is full")
    assert (e.plugin, e.command, e.network) == ("tp-b", "ADD", "errs")
    text = str(e)
    assert all(s in text for s in ("'tp-b'", "ADD", "'errs'", "quota exceeded", "pool ipv4-a"))
    await runtime.delete(net, cni.RuntimeConf("e1", NETNS))
    assert plugins.states() == set()

    junk = net_of(
        {"cniVersion": "1.0.0", "name": "errs", "plugins": [{"type": "tp-a", "garbage": True}]}
    )
    with pytest.raises(cni.CNIError) as info:
        await runtime.add(junk, cni.RuntimeConf("e2", NETNS))
    assert info.value.code == cni.Code.INTERNAL
    assert "something went wrong in the test plugin" in str(info.value)
    assert "exit status 3" in str(info.value)

    silent = net_of(
        {"cniVersion": "1.0.0", "name": "errs", "plugins": [{"type": "tp-a", "noResult": True}]}
    )
    with pytest.raises(cni.CNIError) as info:
        await runtime.add(silent, cni.RuntimeConf("e3", NETNS))
    assert info.value.code == cni.Code.DECODING_FAILURE and "no result" in str(info.value)

    missing = net_of({"cniVersion": "1.0.0", "name": "errs", "plugins": [{"type": "nope"}]})
    with pytest.raises(cni.PluginNotFoundError) as info:
        await runtime.add(missing, cni.RuntimeConf("e4", NETNS))
    assert "'nope'" in str(info.value) and str(plugins.bin) in str(info.value)

    with pytest.raises(cni.CNIError, match="invalid container id"):
        await runtime.add(net, cni.RuntimeConf("../etc", NETNS))
    with pytest.raises(cni.CNIError, match="invalid interface name"):
        await runtime.add(net, cni.RuntimeConf("ok", NETNS, ifname="a-very-long-ifname"))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


async def test_timeout_and_cancellation_kill_the_plugin(plugins: Plugins) -> None:
    runtime = plugins.runtime(timeout=1)
    net = net_of(
        {
            "cniVersion": "1.0.0",
            "name": "slow",
            "plugins": [{"type": "tp-a"}, {"type": "tp-b", "hang": True}],
        }
    )
    rt = cni.RuntimeConf("t1", NETNS)
    async with asyncio.timeout(20):
        with pytest.raises(cni.PluginTimeoutError) as info:
            await runtime.add(net, rt)
    assert info.value.plugin == "tp-b" and "within 1s" in str(info.value)
    [hung] = [c for c in plugins.calls("ADD") if c["argv0"] == "tp-b"]
    wait_for(lambda: not pid_alive(hung["pid"]), timeout=10, what="the hung plugin to be gone")
    entry = await runtime.cached_attachment(net, rt)
    assert entry is not None and entry.result is None
    await runtime.delete(net, rt)  # DEL does not hang: it runs after a half-failed ADD
    assert plugins.states() == set()

    plugins.clear()
    patient = plugins.runtime(timeout=None)
    task = asyncio.create_task(patient.add(net, cni.RuntimeConf("t2", NETNS)))
    await asyncio.to_thread(
        wait_for,
        lambda: any(c["argv0"] == "tp-b" for c in plugins.calls("ADD")),
        10,
        "tp-b to start",
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [hung] = [c for c in plugins.calls("ADD") if c["argv0"] == "tp-b"]
    wait_for(lambda: not pid_alive(hung["pid"]), timeout=10, what="the cancelled plugin to go")
    await patient.delete(net, cni.RuntimeConf("t2", NETNS))


async def test_cache_is_shared_across_runtime_instances(plugins: Plugins) -> None:
    net = net_of(CHAIN)
    rt = cni.RuntimeConf("r1", NETNS, args=(("A", "1"),), capability_args=CAPS)
    result = await plugins.runtime().add(net, rt)
    [path] = list((plugins.cache / "results").iterdir())
    assert path.name == "contract-r1-eth0"
    on_disk = json.loads(path.read_text())
    assert on_disk["kind"] == "cniCacheV1" and on_disk["result"] == result.to_json()
    assert json.loads(base64.b64decode(on_disk["config"])) == CHAIN
    assert on_disk["cniArgs"] == [["A", "1"]] and on_disk["netns"] == NETNS

    restarted = plugins.runtime()  # a new process would see the same
    assert await restarted.cached_result(net, rt) == result
    plugins.clear()
    await restarted.check(net, rt)
    await restarted.delete(net, cni.RuntimeConf("r1", NETNS))  # no args: the cached ones
    dels = plugins.calls("DEL")
    assert all(d["stdin"]["prevResult"] == result.to_json() for d in dels)
    assert all(d["env"]["CNI_ARGS"] == "A=1" for d in dels)
    assert dels[1]["stdin"]["runtimeConfig"] == {"portMappings": CAPS["portMappings"]}
    assert not path.exists()
    with pytest.raises(cni.CNIError) as info:
        await restarted.check(net, rt)
    assert info.value.code == cni.Code.UNKNOWN_CONTAINER


def overlaps(calls: list[dict[str, Any]]) -> int:
    """The largest number of calls running at one moment (from their start/end records)."""
    edges = sorted([(c["start"], 1) for c in calls] + [(c["end"], -1) for c in calls])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


async def test_concurrency_is_bounded_and_serial_per_container(plugins: Plugins) -> None:
    runtime = plugins.runtime(max_parallel=3)
    net = net_of(
        {"cniVersion": "1.0.0", "name": "par", "plugins": [{"type": "tp-a", "delay": 0.3}]}
    )
    await runtime.negotiate(net)
    rts = [cni.RuntimeConf(f"p{i}", NETNS) for i in range(9)]
    await asyncio.gather(*(runtime.add(net, rt) for rt in rts))
    ends = [c for c in read_calls(plugins.record) if "end" in c]
    assert len(ends) == 9
    assert 2 <= overlaps(ends) <= 3, "in parallel, but never more than three at a time"

    plugins.clear()
    same = cni.RuntimeConf("p0", NETNS)
    await asyncio.gather(runtime.delete(net, same), runtime.delete(net, same))
    ends = [c for c in read_calls(plugins.record) if "end" in c]
    assert len(ends) == 2 and overlaps(ends) == 1, "one container: one operation at a time"


async def test_status_and_gc_at_1_1(plugins: Plugins) -> None:
    runtime = plugins.runtime()
    conf = {"cniVersion": "1.1.0", "name": "gcnet", "plugins": [{"type": "tp-a"}, {"type": "tp-b"}]}
    net = net_of(conf)
    await runtime.status(net)
    statuses = plugins.calls("STATUS")
    assert [s["argv0"] for s in statuses] == ["tp-a", "tp-b"]
    for s in statuses:
        assert cni_env(s) == {"CNI_COMMAND": "STATUS", "CNI_PATH": str(plugins.bin)}
        assert s["stdin"]["name"] == "gcnet" and s["stdin"]["cniVersion"] == "1.1.0"

    sick = net_of({**conf, "plugins": [{"type": "tp-a"}, {"type": "tp-b", "unavailable": True}]})
    with pytest.raises(cni.CNIError) as info:
        await runtime.status(sick)
    assert info.value.code == cni.Code.PLUGIN_NOT_AVAILABLE and info.value.plugin == "tp-b"

    for cid in ("g1", "g2", "g3"):
        await runtime.add(net, cni.RuntimeConf(cid, f"/var/run/netns/{cid}", args=(("X", cid),)))
    (plugins.cache / "results" / "gcnet-g3-eth0").unlink()  # a leftover only plugins know
    assert plugins.states() == {"g1--eth0", "g2--eth0", "g3--eth0"}
    plugins.clear()
    await runtime.gc(net, [cni.GCAttachment("g1", "eth0")])
    calls = plugins.calls()
    dels = [c for c in calls if c["command"] == "DEL"]
    assert [(d["argv0"], d["env"]["CNI_CONTAINERID"]) for d in dels] == [
        ("tp-b", "g2"),
        ("tp-a", "g2"),
    ]
    assert all(d["env"]["CNI_NETNS"] == "/var/run/netns/g2" for d in dels)
    assert all(d["env"]["CNI_ARGS"] == "X=g2" for d in dels)
    gcs = [c for c in calls if c["command"] == "GC"]
    assert [g["argv0"] for g in gcs] == ["tp-a", "tp-b"]
    valid = [{"containerID": "g1", "ifname": "eth0"}]
    for g in gcs:
        assert cni_env(g) == {"CNI_COMMAND": "GC", "CNI_PATH": str(plugins.bin)}
        assert g["stdin"]["cni.dev/valid-attachments"] == valid
        assert g["stdin"]["cni.dev/attachments"] == valid
        assert g["stdin"]["cniVersion"] == "1.1.0" and g["stdin"]["name"] == "gcnet"
    assert plugins.states() == {"g1--eth0"}
    assert [p.name for p in (plugins.cache / "results").iterdir()] == ["gcnet-g1-eth0"]

    plugins.clear()
    await runtime.gc(net_of({**conf, "disableGC": True}), [])
    assert plugins.calls() == [], "disableGC: GC does nothing at all"

    at_100 = net_of({**conf, "cniVersion": "1.0.0"})
    await runtime.status(at_100)
    await runtime.gc(at_100, [])  # below 1.1: cached attachments are deleted, no GC command
    assert [c["command"] for c in plugins.calls()] == ["DEL", "DEL"]
    assert plugins.states() == set()


async def test_disable_check(plugins: Plugins) -> None:
    runtime = plugins.runtime()
    net = net_of({**CHAIN, "disableCheck": True})
    await runtime.add(net, cni.RuntimeConf("dc", NETNS))
    plugins.clear()
    await runtime.check(net, cni.RuntimeConf("dc", NETNS))
    assert plugins.calls("CHECK") == []
    await runtime.delete(net, cni.RuntimeConf("dc", NETNS))


def test_plugins_that_do_not_read_stdin(plugins: Plugins) -> None:
    """A plugin may exit without reading its stdin (the reference plugins' VERSION does): the
    write then fails with a broken pipe (asyncio) or on a closed transport (uvloop, which kybern
    runs on); either way the plugin's answer counts. A big config makes the write certain to
    hit the closed pipe."""
    import uvloop

    quick = plugins.bin / "quick"
    quick.write_text(
        "#!/bin/sh\n"
        'if [ "$CNI_COMMAND" = VERSION ]; then\n'
        '  echo \'{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}\'\n'
        'elif [ "$CNI_COMMAND" = ADD ]; then\n'
        '  echo \'{"cniVersion":"1.0.0","ips":[{"address":"10.97.0.2/24"}]}\'\n'
        "fi\n"
    )
    quick.chmod(0o755)
    net = net_of(
        {
            "cniVersion": "1.0.0",
            "name": "quick",
            "plugins": [{"type": "quick", "padding": "x" * 400_000}],
        }
    )

    async def scenario() -> None:
        runtime = cni.Runtime([plugins.bin, "/usr/lib/cni"], cache_dir=plugins.cache)
        assert "1.0.0" in await runtime.version_info("bridge")
        for i in range(5):
            rt = cni.RuntimeConf(f"q{i}", NETNS)
            result = await runtime.add(net, rt)
            assert result.ips[0].address == "10.97.0.2/24"
            await runtime.delete(net, rt)

    asyncio.run(scenario())
    uvloop.run(scenario())
