"""The read half of the generic resource store: `StoreReads` (the base of `store.Store`) serves
get and list from the watch cache after making it at least as new as the storage backend
(read-your-writes), builds the label/field selector filters that lists and watches share,
pages lists with continue tokens, and reads exact or paged revisions from the backend itself.
`ListOptions`, `ListResult` and the continue-token codec live here and are re-exported by
`kybern.apiserver.store`; the write paths (create, update, patch, delete) stay there."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import orjson

from kybern import storage
from kybern.api import errors, registry, selectors
from kybern.apiserver import cache as cachemod
from kybern.apiserver import crds


@dataclass
class ListOptions:
    label_selector: str = ""
    field_selector: str = ""
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass
class ListResult:
    items: list[cachemod.CachedObject]
    revision: int
    continue_token: str = ""
    remaining: int | None = None


def encode_continue(revision: int, start: str) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        if data.get("v") != "meta.k8s.io/v1":
            raise ValueError
        rev, start = int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as e:
        raise errors.bad_request("continue key is not valid: malformed continue token") from e
    if rev <= 0:
        raise errors.bad_request("continue key is not valid: invalid start key")
    return rev, start


class StoreReads:
    """Reads over the backend with Kubernetes semantics, from the watch cache."""

    def __init__(self, backend: storage.Backend, cacher: cachemod.Cacher) -> None:
        self.backend = backend
        self.cacher = cacher
        self.crds = crds.CRDs(cacher)  # custom resources: schemas, CEL, versions

    async def consistent(self) -> None:
        """Make the cache at least as new as the store (read-your-writes, also of writes made
        through other API servers: for etcd, `latest_revision` is a quorum read)."""
        try:
            rev = await self.backend.latest_revision()
        except storage.UnavailableError as e:
            raise errors.service_unavailable(f"storage is unavailable: {e}") from e
        if not await self.cacher.wait_revision(rev, 3.0):
            raise errors.timeout("Timeout: Too large resource version")

    async def get(self, res: registry.Resource, namespace: str, name: str) -> cachemod.CachedObject:
        await self.consistent()
        obj = self.cacher.get(res.key_prefix).objects.get(res.key(namespace, name))
        if obj is None:
            raise errors.not_found(res.plural, res.group, name)
        return await self.crds.view(res, obj) if res.converted else obj

    def peek(
        self, res: registry.Resource, namespace: str, name: str
    ) -> cachemod.CachedObject | None:
        return self.cacher.get(res.key_prefix).objects.get(res.key(namespace, name))

    def make_filter(
        self, res: registry.Resource, label_selector: str, field_selector: str
    ) -> cachemod.Filter | None:
        lsel = selectors.parse_labels(label_selector) if label_selector else None
        fsel = selectors.parse_fields(field_selector) if field_selector else None
        if fsel is not None:
            allowed = {"metadata.name", "metadata.namespace", *res.field_selectors}
            selectors.validate_fields(fsel, allowed, res.kind)  # CRDs: their selectableFields
        if lsel is not None and lsel.empty:
            lsel = None
        if fsel is not None and not fsel.requirements:
            fsel = None
        if lsel is None and fsel is None:
            return None
        paths = res.field_selectors
        if lsel is None and fsel is not None:
            fmatches = fsel.matches

            def match_fields(o: cachemod.CachedObject) -> bool:
                return fmatches(o.fields(paths))  # extracted once per object, for all watchers

            return match_fields

        def match(o: cachemod.CachedObject) -> bool:
            if lsel is not None and not lsel.matches(o.obj["metadata"].get("labels") or {}):
                return False
            if fsel is not None:
                return fsel.matches(o.fields(paths))
            return True

        return match

    async def list(self, res: registry.Resource, namespace: str, opts: ListOptions) -> ListResult:
        flt = self.make_filter(res, opts.label_selector, opts.field_selector)
        rv, rvm = opts.resource_version, opts.resource_version_match
        if rvm and not rv:
            raise errors.bad_request(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless "
                "resourceVersion is provided"
            )
        if rvm and rvm not in ("Exact", "NotOlderThan"):
            raise errors.bad_request(
                f'resourceVersionMatch: Unsupported value: "{rvm}": supported values: '
                '"Exact", "NotOlderThan"'
            )
        if opts.continue_token:
            if rv:
                raise errors.bad_request(
                    "specifying resource version is not allowed when using continue"
                )
            rev, start = decode_continue(opts.continue_token)
            return await self._list_backend(res, namespace, flt, rev, start, opts.limit)
        want = _parse_rv(rv) if rv else 0
        if rvm == "Exact":
            if want == 0:
                raise errors.bad_request(
                    'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is '
                    'forbidden for resourceVersion "0"'
                )
            return await self._list_backend(res, namespace, flt, want, "", opts.limit)
        if rv != "0":
            await self.consistent()
        if want and not await self.cacher.wait_revision(want, 3.0):
            raise errors.timeout(
                f"Timeout: Too large resource version: {want}, current: {self.cacher.revision}"
            )
        rc = self.cacher.get(res.key_prefix)
        items = [o for o in rc.items(namespace) if flt is None or flt(o)]
        items.sort(key=lambda o: o.key)
        revision = self.cacher.revision
        if opts.limit and len(items) > opts.limit:
            remaining = len(items) - opts.limit
            items = items[: opts.limit]
            token = encode_continue(revision, items[-1].key + "\x00")
            return ListResult(items, revision, token, remaining)
        return ListResult(items, revision)

    async def _list_backend(
        self,
        res: registry.Resource,
        namespace: str,
        flt: cachemod.Filter | None,
        revision: int,
        start: str,
        limit: int,
    ) -> ListResult:
        prefix = res.namespace_prefix(namespace)
        start_key = prefix + start.lstrip("/") if start and not start.startswith("/") else start
        if start_key and not start_key.startswith(prefix):
            raise errors.bad_request("continue key is not valid: start key outside the list")
        out: list[cachemod.CachedObject] = []
        try:
            while True:
                page = await self.backend.list(prefix, revision, start_key, limit)
                revision = page.revision
                for kv in page.items:
                    o = cachemod.decode(kv)
                    if flt is None or flt(o):
                        out.append(o)
                if not page.more or not page.items:
                    break
                start_key = page.items[-1].key + "\x00"
                if limit and len(out) >= limit:
                    break
        except storage.CompactedError as e:
            raise errors.StatusError(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter, or use the "
                "continue token in this response to retrieve the remainder of the results. "
                "Continuing with the provided token results in an inconsistent list - objects "
                "that were created, modified, or deleted between the time the first chunk was "
                "returned and now may show up in the list."
                if start
                else f"too old resource version: {revision} ({e.compact_revision})",
            ) from e
        if limit and len(out) > limit:
            out = out[:limit]
        token = ""
        if limit and len(out) == limit:
            nxt = out[-1].key + "\x00"
            more = await self.backend.list(prefix, revision, nxt, 1)
            if more.items:
                token = encode_continue(revision, nxt)
        return ListResult(out, revision, token)


def _parse_rv(rv: str) -> int:
    try:
        n = int(rv)
        if n < 0:
            raise ValueError
        return n
    except ValueError:
        raise errors.bad_request(f'invalid resource version "{rv}"') from None
