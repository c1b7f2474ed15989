"""The shortcuts of the API server's HTTP path give what the long way gives: the field manager
remembered per User-Agent, the Table negotiation remembered per Accept header, and a body
taken whole from a request stream that has ended (else read chunk by chunk)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any
from unittest import mock

import pytest
from aiohttp import streams
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from kybern.api import errors, registry
from kybern.apiserver import codec, handlers, tables

REG = registry.Registry()
RESOURCES = [r for r in (REG.lookup("", "v1", "pods"), REG.lookup("", "v1", "nodes")) if r]


def _manager_the_long_way(user_agent: str) -> str:
    """`manager_or_user_agent` as it was: the User-Agent up to its first `/`, printable
    characters, at most 128 bytes."""
    out, size = [], 0
    for ch in user_agent.split("/", 1)[0]:
        if not ch.isprintable():
            continue
        size += len(ch.encode())
        if size > 128:
            break
        out.append(ch)
    return "".join(out)


def _request(
    path: str = "/api/v1/namespaces/a/pods", headers: dict[str, str] | None = None, **kw: Any
) -> Any:
    return make_mocked_request("GET", path, headers=CIMultiDict(headers or {}), **kw)


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(["a", "Z", "-", ".", " ", "/", "\t", "\x00", "é", "€", "😀"]),
        max_size=200,
    )
)
def test_user_agent_manager_is_the_long_way(user_agent: str) -> None:
    assert codec.user_agent_manager(user_agent) == _manager_the_long_way(user_agent)
    assert codec.user_agent_manager(user_agent) == _manager_the_long_way(user_agent)  # cached


def test_manager_or_user_agent_prefers_the_field_manager() -> None:
    ua = {"User-Agent": "kubectl/v1.32.0 (linux/amd64) kubernetes/abc"}
    assert codec.manager_or_user_agent(_request(headers=ua)) == "kubectl"
    req = _request("/api/v1/namespaces/a/pods?fieldManager=mine", headers=ua)
    assert codec.manager_or_user_agent(req) == "mine"
    assert codec.manager_or_user_agent(_request()) == ""


_CLAUSES = [
    "application/json",
    "application/json;as=Table;v=v1;g=meta.k8s.io",
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io",
    "application/json;as=Table;v=v2;g=meta.k8s.io",
    "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io",
    "application/*",
    "*/*",
    "text/plain",
    "text/html;q=0.9",
    "image/png",
    "application/json;q=0",
    "application/json;q=0.5",
    "application/json;q=x",
    "",
    " ",
]


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return ("ok", fn(*args))
    except errors.StatusError as e:
        return ("status", (e.code, e.reason, e.message))


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(_CLAUSES), max_size=4),
    st.sampled_from(["", ", ", ","]),
    st.sampled_from(RESOURCES),
    st.booleans(),
    st.sampled_from(["", "?includeObject=Object", "?includeObject=Bogus", "?includeObject="]),
)
def test_table_wanted_is_tables_wanted(
    clauses: list[str], sep: str, res: registry.Resource, crd: bool, query: str
) -> None:
    accept = (sep or ",").join(clauses)
    res = dataclasses.replace(res, crd=crd)
    for _ in range(2):  # the second time from the cache
        req = _request("/api/v1/pods" + query, headers={"Accept": accept})
        assert _outcome(handlers.table_wanted, req, res) == _outcome(tables.wanted, req, res)


def test_table_wanted_without_accept() -> None:
    req = _request()
    assert handlers.table_wanted(req, RESOURCES[0]) == tables.wanted(req, RESOURCES[0]) == ""


async def _read_the_long_way(content: streams.StreamReader) -> bytes:
    data = bytearray()
    async for chunk in content.iter_chunked(65536):
        data += chunk
        if len(data) > codec.MAX_BODY:
            raise errors.too_large()
    return bytes(data)


def _stream(chunks: list[bytes], eof: bool) -> streams.StreamReader:
    protocol = mock.Mock(_reading_paused=False)
    reader = streams.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    for c in chunks:
        reader.feed_data(c)
    if eof:
        reader.feed_eof()
    return reader


def _body_request(reader: streams.StreamReader, length: int | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if length is not None:
        headers["Content-Length"] = str(length)
    return make_mocked_request("POST", "/api/v1/pods", headers=CIMultiDict(headers), payload=reader)


@pytest.mark.parametrize(
    "chunks",
    [
        [],
        [b"{}"],
        [b'{"a":', b"1}", b"", b" "],
        [b"x" * 70000, b"y" * 3],
        [b"z" * (codec.MAX_BODY - 1), b"a"],
        [b"z" * codec.MAX_BODY, b"a"],
    ],
)
async def test_read_body_of_an_ended_stream_is_the_long_way(chunks: list[bytes]) -> None:
    total = sum(len(c) for c in chunks)
    for length in (None, total):
        fast = _body_request(_stream(chunks, eof=True), length)
        slow = _stream(chunks, eof=True)
        expected = await _outcome_async(_read_the_long_way(slow))
        assert fast.content.is_eof()
        assert await _outcome_async(codec.read_body(fast)) == expected
        if expected[0] == "ok":
            assert fast.content.at_eof()  # all of it taken


async def test_read_body_waits_for_a_stream_still_arriving() -> None:
    reader = _stream([b'{"a":'], eof=False)
    req = _body_request(reader, None)
    task = asyncio.create_task(codec.read_body(req))
    await asyncio.sleep(0)
    assert not task.done()
    reader.feed_data(b"1}")
    reader.feed_eof()
    assert await task == b'{"a":1}'


async def test_read_body_of_a_failed_stream_raises_as_the_long_way() -> None:
    reader = _stream([b"{}"], eof=True)
    reader.set_exception(ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError):
        await codec.read_body(_body_request(reader, None))
    with pytest.raises(ConnectionResetError):
        await _read_the_long_way(_stream_failed())


def _stream_failed() -> streams.StreamReader:
    reader = _stream([b"{}"], eof=True)
    reader.set_exception(ConnectionResetError("gone"))
    return reader


async def test_read_body_refuses_a_declared_length_over_the_limit() -> None:
    req = _body_request(_stream([b"{}"], eof=True), codec.MAX_BODY + 1)
    with pytest.raises(errors.StatusError) as e:
        await codec.read_body(req)
    assert e.value.code == 413


async def test_read_body_without_a_body() -> None:
    assert await codec.read_body(make_mocked_request("GET", "/api")) == b""


async def _outcome_async(aw: Any) -> tuple[str, Any]:
    try:
        return ("ok", await aw)
    except errors.StatusError as e:
        return ("status", (e.code, e.reason))
