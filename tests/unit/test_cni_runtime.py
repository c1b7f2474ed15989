"""`Runtime` on the in-memory executor (`kybern.cni.fake`): chain order and `prevResult`
chaining for ADD/CHECK/DEL, conversion of results at other versions, the failed-ADD record,
DEL going on past failures, negotiation and the per-binary VERSION cache, the parallelism bound
and per-container serialization (gated, no sleeps), timeouts and spawn errors, STATUS and GC."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from kybern import cni
from kybern.cni.fake import FakeCall, FakeExecutor, FakeFailure
from kybern.cni.invoke import ExecOutput


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("a", "b", "c", "old"):
        (d / name).write_text("#!/bin/false\n")
        (d / name).chmod(0o755)
    (d / "not-exec").write_text("")
    return d


def make(bin_dir: Path, fake: Any, **kw: Any) -> cni.Runtime:
    return cni.Runtime(
        [bin_dir.parent / "empty", bin_dir],
        cache_dir=bin_dir.parent / "cache",
        executor=fake,
        env={"PATH": "/bin"},
        **kw,
    )


def net(*plugins: dict[str, Any], version: str = "1.0.0", **top: Any) -> cni.NetworkConfigList:
    return cni.config.parse({"cniVersion": version, "name": "n", "plugins": list(plugins), **top})


def adds_ip(address: str) -> Any:
    def handler(call: FakeCall) -> Mapping[str, Any] | None:
        if call.command != "ADD":
            return None
        prev = dict(call.stdin.get("prevResult") or {})
        ips = [*prev.get("ips", []), {"address": address}]
        return {**prev, "cniVersion": call.stdin["cniVersion"], "ips": ips}

    return handler


RT = cni.RuntimeConf("c1", "/var/run/netns/c1", capability_args={"portMappings": [1]})


async def test_add_check_del_chain(bin_dir: Path) -> None:
    fake = FakeExecutor({"a": adds_ip("10.0.0.2/24"), "b": adds_ip("10.0.0.3/24")})
    rt = make(bin_dir, fake)
    n = net({"type": "a"}, {"type": "b", "capabilities": {"portMappings": True}}, {"type": "c"})
    result = await rt.add(n, RT)
    assert [ip.address for ip in result.ips] == ["10.0.0.2/24", "10.0.0.3/24"]
    a, b, c = fake.of("ADD")
    assert [x.plugin for x in (a, b, c)] == ["a", "b", "c"]
    assert "prevResult" not in a.stdin and "runtimeConfig" not in a.stdin
    assert b.stdin["prevResult"] == {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}
    assert b.stdin["runtimeConfig"] == {"portMappings": [1]}
    assert c.stdin["prevResult"] == result.to_json()
    assert a.cni_env["CNI_PATH"] == f"{bin_dir.parent / 'empty'}:{bin_dir}"
    assert await rt.cached_result(n, RT) == result

    await rt.check(n, RT)
    assert [x.plugin for x in fake.of("CHECK")] == ["a", "b", "c"]
    assert all(x.stdin["prevResult"] == result.to_json() for x in fake.of("CHECK"))
    await rt.delete(n, RT)
    assert [x.plugin for x in fake.of("DEL")] == ["c", "b", "a"]
    assert all(x.stdin["prevResult"] == result.to_json() for x in fake.of("DEL"))
    assert await rt.cached_attachment(n, RT) is None
    await rt.delete(n, RT)
    assert "prevResult" not in fake.of("DEL")[-1].stdin, "no cache: no prevResult"
    assert len(fake.of("VERSION")) == 3


async def test_result_at_another_version_is_converted(bin_dir: Path) -> None:
    def old_style(call: FakeCall) -> Mapping[str, Any]:
        return {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.0.0.9/24"}]}

    fake = FakeExecutor({"a": old_style})
    result = await make(bin_dir, fake).add(net({"type": "a"}, {"type": "b"}), RT)
    assert fake.of("ADD")[1].stdin["prevResult"] == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.0.0.9/24"}],
    }
    assert result.cni_version == "1.0.0"

    def unconvertible(call: FakeCall) -> Mapping[str, Any]:
        return {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.9/24"}] * 2}

    with pytest.raises(cni.CNIError, match=r"cannot convert result to 0\.2\.0"):
        await make(bin_dir, FakeExecutor({"a": unconvertible})).add(
            net({"type": "a"}, version="0.2.0"), RT
        )


async def test_failed_add_is_recorded_and_del_goes_on_past_failures(bin_dir: Path) -> None:
    def boom(call: FakeCall) -> None:
        raise FakeFailure(120, f"{call.command} failed", "details here")

    fake = FakeExecutor({"b": boom})
    rt = make(bin_dir, fake)
    n = net({"type": "a"}, {"type": "b", "capabilities": {"portMappings": True}}, {"type": "c"})
    with pytest.raises(cni.CNIError) as info:
        await rt.add(n, RT)
    assert (info.value.code, info.value.plugin, info.value.details) == (120, "b", "details here")
    assert [x.plugin for x in fake.of("ADD")] == ["a", "b"], "c never ran"
    entry = await rt.cached_attachment(n, RT)
    assert entry is not None and entry.result is None and entry.netns == RT.netns

    fake.handlers["c"] = boom
    with pytest.raises(cni.MultiError) as multi:
        await rt.delete(n, cni.RuntimeConf("c1", ""))
    assert [x.plugin for x in fake.of("DEL")] == ["c", "b", "a"], "every plugin was called"
    assert [e.plugin for e in multi.value.errors] == ["c", "b"]
    assert fake.of("DEL")[1].stdin["runtimeConfig"] == {"portMappings": [1]}, "cached caps"
    assert await rt.cached_attachment(n, RT) is not None, "kept for the next DEL"
    del fake.handlers["b"], fake.handlers["c"]
    await rt.delete(n, RT)
    assert await rt.cached_attachment(n, RT) is None


async def test_negotiation_and_version_cache(bin_dir: Path) -> None:
    fake = FakeExecutor(versions={"old": ["0.3.1", "0.4.0"]})
    rt = make(bin_dir, fake)
    n = net({"type": "a"}, {"type": "old"}, version="1.1.0", cniVersions=["0.4.0", "1.0.0"])
    assert await rt.negotiate(n) == "0.4.0"
    await asyncio.gather(*(rt.version_info("a") for _ in range(5)))
    assert sorted(c.plugin for c in fake.of("VERSION")) == ["a", "old"], "asked once per binary"
    await rt.add(n, RT)
    assert {c.stdin["cniVersion"] for c in fake.of("ADD")} == {"0.4.0"}
    (bin_dir / "a").write_text("#!/bin/true\n")  # replaced binary: asked again
    await rt.negotiate(n)
    assert [c.plugin for c in fake.of("VERSION")].count("a") == 2

    with pytest.raises(cni.CNIError) as info:
        await rt.negotiate(net({"type": "a"}, {"type": "old"}, version="1.0.0"))
    assert info.value.code == cni.Code.INCOMPATIBLE_VERSION and info.value.plugin == "old"
    trusting = make(bin_dir, FakeExecutor(), negotiate=False)
    assert await trusting.negotiate(n) == "1.1.0"

    missing = make(bin_dir, FakeExecutor())
    with pytest.raises(cni.PluginNotFoundError, match="'zzz'") as nf:
        await missing.add(net({"type": "zzz"}), RT)
    assert nf.value.network == "n"
    with pytest.raises(cni.PluginNotFoundError):
        await missing.add(net({"type": "not-exec"}), RT)


async def test_del_with_a_missing_plugin_still_runs_the_others(bin_dir: Path) -> None:
    fake = FakeExecutor()
    rt = make(bin_dir, fake, negotiate=False)
    with pytest.raises(cni.PluginNotFoundError) as info:
        await rt.delete(net({"type": "a"}, {"type": "zzz"}), RT)
    assert info.value.command == "DEL"
    assert [c.plugin for c in fake.of("DEL")] == ["a"]


class GateExecutor:
    """Holds every call until `gate` opens; counts how many run at once, per container too."""

    def __init__(self) -> None:
        self.inner = FakeExecutor()
        self.gate = asyncio.Event()
        self.running = 0
        self.most = 0
        self.per_container: dict[str, int] = {}
        self.most_per_container = 0

    async def run(
        self, path: str, *, env: Mapping[str, str], stdin: bytes, timeout: float | None
    ) -> ExecOutput:
        cid = env.get("CNI_CONTAINERID", "")
        self.running += 1
        self.per_container[cid] = self.per_container.get(cid, 0) + 1
        self.most = max(self.most, self.running)
        self.most_per_container = max(self.most_per_container, self.per_container[cid])
        try:
            if env.get("CNI_COMMAND") != "VERSION":
                await self.gate.wait()
            return await self.inner.run(path, env=env, stdin=stdin, timeout=timeout)
        finally:
            self.running -= 1
            self.per_container[cid] -= 1


async def wait_until(predicate: Any) -> None:
    for _ in range(10_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_parallelism_is_bounded_and_one_container_is_serial(bin_dir: Path) -> None:
    gate = GateExecutor()
    rt = make(bin_dir, gate, max_parallel=3)
    n = net({"type": "a"}, {"type": "b"})
    await rt.negotiate(n)
    tasks = [asyncio.create_task(rt.add(n, cni.RuntimeConf(f"p{i}", "/x"))) for i in range(10)]
    tasks += [asyncio.create_task(rt.delete(n, cni.RuntimeConf("p0", "/x"))) for _ in range(3)]
    await wait_until(lambda: gate.running == 3)
    for _ in range(50):
        await asyncio.sleep(0)
    assert gate.running == 3
    gate.gate.set()
    await asyncio.gather(*tasks)
    assert gate.most == 3 and gate.most_per_container == 1


async def test_timeouts_and_spawn_errors(bin_dir: Path) -> None:
    class Failing:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        async def run(self, path: str, **kw: Any) -> ExecOutput:
            raise self.exc

    rt = make(bin_dir, Failing(TimeoutError()), timeout=2.5, negotiate=False)
    with pytest.raises(cni.PluginTimeoutError, match=r"within 2\.5s") as info:
        await rt.add(net({"type": "a"}), RT)
    assert info.value.plugin == "a" and info.value.command == "ADD"
    rt = make(bin_dir, Failing(PermissionError(13, "Permission denied")), negotiate=False)
    with pytest.raises(cni.CNIError, match=r"cannot run .*Permission denied"):
        await rt.add(net({"type": "a"}), RT)


async def test_check_rules(bin_dir: Path) -> None:
    fake = FakeExecutor()
    rt = make(bin_dir, fake)
    with pytest.raises(cni.CNIError) as info:
        await rt.check(net({"type": "a"}), RT)
    assert info.value.code == cni.Code.UNKNOWN_CONTAINER
    with pytest.raises(cni.CNIError, match="does not support the CHECK"):
        await rt.check(net({"type": "a"}, version="0.3.1"), RT)
    await rt.check(net({"type": "a"}, disableCheck=True), RT)
    assert fake.of("CHECK") == []


async def test_status(bin_dir: Path) -> None:
    def unavailable(call: FakeCall) -> None:
        raise FakeFailure(50, "not ready", "no uplink")

    fake = FakeExecutor({"b": unavailable})
    rt = make(bin_dir, fake)
    await rt.status(net({"type": "a"}, {"type": "b"}))
    assert fake.of("STATUS") == [], "below 1.1 a network counts as ready"
    with pytest.raises(cni.CNIError) as info:
        await rt.status(net({"type": "a"}, {"type": "b"}, {"type": "c"}, version="1.1.0"))
    assert info.value.code == cni.Code.PLUGIN_NOT_AVAILABLE and "no uplink" in str(info.value)
    assert [c.plugin for c in fake.of("STATUS")] == ["a", "b"]
    assert fake.of("STATUS")[0].cni_env == {"CNI_COMMAND": "STATUS", "CNI_PATH": rt_path(rt)}


def rt_path(rt: cni.Runtime) -> str:
    return ":".join(rt.bin_dirs)


async def test_gc(bin_dir: Path) -> None:
    fake = FakeExecutor()
    rt = make(bin_dir, fake)
    n = net({"type": "a"}, {"type": "b"}, version="1.1.0")
    for cid in ("k", "x", "y"):
        await rt.add(n, cni.RuntimeConf(cid, f"/ns/{cid}", args=(("ID", cid),)))
    await rt.add(net({"type": "a"}, version="1.1.0", name="other"), cni.RuntimeConf("x", "/o"))

    def fails_for_y(call: FakeCall) -> None:
        if call.command == "DEL" and call.env["CNI_CONTAINERID"] == "y":
            raise FakeFailure(11, "try again later")

    fake.handlers["b"] = fails_for_y
    fake.calls.clear()
    with pytest.raises(cni.CNIError, match="try again later"):
        await rt.gc(n, [cni.GCAttachment("k", "eth0")])
    dels = [(c.plugin, c.env["CNI_CONTAINERID"], c.env["CNI_ARGS"]) for c in fake.of("DEL")]
    assert dels == [("b", "x", "ID=x"), ("a", "x", "ID=x"), ("b", "y", "ID=y"), ("a", "y", "ID=y")]
    gcs = fake.of("GC")
    assert [c.plugin for c in gcs] == ["a", "b"], "GC is sent even after a failed DEL"
    assert gcs[0].stdin["cni.dev/valid-attachments"] == [{"containerID": "k", "ifname": "eth0"}]
    remaining = {(e.network, e.container_id) for e in await rt.cached_attachments()}
    assert remaining == {("n", "k"), ("n", "y"), ("other", "x")}

    fake.calls.clear()
    await rt.gc(net({"type": "a"}, version="1.1.0", disableGC=True), [])
    assert fake.calls == []


async def test_version_waiters_survive_the_askers_cancellation(bin_dir: Path) -> None:
    class Blocking:
        def __init__(self) -> None:
            self.inner = FakeExecutor()
            self.gate = asyncio.Event()
            self.started = 0

        async def run(self, path: str, **kw: Any) -> ExecOutput:
            self.started += 1
            await self.gate.wait()
            return await self.inner.run(path, **kw)

    ex = Blocking()
    rt = make(bin_dir, ex)
    first = asyncio.create_task(rt.version_info("a"))
    await wait_until(lambda: ex.started == 1)
    second = asyncio.create_task(rt.version_info("a"))
    await wait_until(lambda: ex.started == 1 and len(asyncio.all_tasks()) >= 3)
    for _ in range(10):
        await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await wait_until(lambda: ex.started == 2)
    ex.gate.set()
    assert "1.1.0" in await second
    assert len(ex.inner.of("VERSION")) == 1
