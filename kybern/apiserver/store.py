"""The generic resource store: every verb of every kind (built-in or CRD) goes through here.
It applies the object lifecycle Kubernetes defines — metadata filling, defaulting, validation,
the spec/status split, generation, optimistic concurrency, finalizers and graceful deletion —
then writes through the storage backend; reads come from the watch cache (`StoreReads`, in
`kybern.apiserver.store_reads`, whose list types this module re-exports). A built-in kind served
in a version it is not stored in is converted to its storage version on the way in (validated,
compared and stored there, as kube does with its internal version; its managedFields tracked and
its webhooks called in the request's version) and back on the way out."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from kybern import storage
from kybern.api import apply, conversion, defaults, errors, objects, registry, validation
from kybern.apiserver import admission as admissionmod
from kybern.apiserver import admission_match, strategy
from kybern.apiserver import cache as cachemod
from kybern.apiserver.store_reads import ListOptions as ListOptions
from kybern.apiserver.store_reads import ListResult as ListResult
from kybern.apiserver.store_reads import StoreReads
from kybern.apiserver.store_reads import decode_continue as decode_continue
from kybern.apiserver.store_reads import encode_continue as encode_continue

Obj = dict[str, Any]
MAX_CONFLICT_RETRIES = 8
# the manager of the API server's own writes (kube's loopback clients say `kube-apiserver/...`)
SERVER_MANAGER = "kube-apiserver"
log = logging.getLogger(__name__)


@dataclass
class DeleteOptions:
    grace_period: int | None = None
    precondition_uid: str = ""
    precondition_rv: str = ""
    propagation: str = ""
    dry_run: bool = False


class Store(StoreReads):
    """CRUD over the backend with Kubernetes semantics; `hooks` adds kind-specific behaviour.
    The reads (get, peek, list, filters, `consistent`) come from `StoreReads`."""

    def __init__(
        self,
        backend: storage.Backend,
        cacher: cachemod.Cacher,
        reg: registry.Registry,
        hooks: strategy.Hooks,
    ) -> None:
        super().__init__(backend, cacher)  # backend, cacher, crds
        self.registry = reg
        self.hooks = hooks
        self._namespaces = registry.BUILTIN[0]
        self.on_deleted: list[Callable[[registry.Resource, Obj], None]] = []
        self._field_managers: dict[registry.Resource, tuple[str, apply.FieldManager]] = {}
        self.admission: admissionmod.Admission | None = None  # webhooks (set by the server)

    def admitting(self) -> admissionmod.Admission | None:
        """The webhook dispatcher when any webhook is configured, else None (cheap)."""
        adm = self.admission
        return adm if adm is not None and adm.enabled() else None

    # ---- field ownership ---------------------------------------------------------------

    def field_manager(self, res: registry.Resource) -> apply.FieldManager:
        """The field manager of a resource (custom resources: typed by their CRD's schema)."""
        stamp = ""
        schema: Obj | None = None
        if res.crd and res.kind != "Scale":
            cached = self.cacher.get(_CRDS.key_prefix).objects.get(
                _CRDS.key("", f"{res.plural}.{res.group}")
            )
            if cached is not None:
                stamp = cached.obj["metadata"].get("resourceVersion", "")
                for v in (cached.obj.get("spec") or {}).get("versions") or []:
                    if v.get("name") == res.version:
                        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        hit = self._field_managers.get(res)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        if res.crd:
            fm = apply.FieldManager.for_custom(res.api_version, res.kind, schema, res.has_status)
        else:
            fm = apply.FieldManager.for_kind(res.group, res.version, res.kind, res.has_status)
        self._field_managers[res] = (stamp, fm)
        return fm

    def track_fields(
        self, res: registry.Resource, old: Obj | None, new: Obj, manager: str, subresource: str
    ) -> None:
        """Update `new`'s managedFields for this write; never fails the write (kube's
        UpdateNoErrors keeps the previous managedFields). A built-in kind served in another
        version than it is stored in is compared as the request's version shows it, so that the
        entry carries that apiVersion and its fields, as kube's field manager makes it."""
        try:
            if res.storage_version:
                seen = self.crds.served(res, new)
                old_seen = None if old is None else self.crds.served(res, old)
                self.field_manager(res).update(old_seen, seen, manager, subresource)
                entries = seen["metadata"].get("managedFields")
                if entries is None:
                    new["metadata"].pop("managedFields", None)
                else:
                    new["metadata"]["managedFields"] = entries
            else:
                self.field_manager(res).update(old, new, manager, subresource)
        except Exception:
            log.exception("managedFields of %s %s not updated", res.kind, new.get("metadata"))
            if old is not None and "managedFields" in old["metadata"]:
                new["metadata"]["managedFields"] = old["metadata"]["managedFields"]

    # ---- writes ------------------------------------------------------------------------

    def _check_namespace(self, res: registry.Resource, namespace: str, name: str) -> None:
        if not res.namespaced:
            return
        ns = self.cacher.get(self._namespaces.key_prefix).objects.get(
            self._namespaces.key("", namespace)
        )
        if ns is None:
            raise errors.not_found("namespaces", "", namespace)
        if ns.obj["metadata"].get("deletionTimestamp"):
            msg = (
                f"unable to create new content in namespace {namespace} because it is "
                "being terminated"
            )
            raise errors.StatusError(
                403,
                "Forbidden",
                f'{res.qualified} "{name}" is forbidden: {msg}',
                group=res.group,
                kind=res.plural,
                name=name,
                causes=[errors.FieldError("NamespaceTerminating", "metadata.namespace", msg)],
            )

    async def create(
        self,
        res: registry.Resource,
        namespace: str,
        obj: Obj,
        *,
        dry_run: bool = False,
        field_manager: str | None = SERVER_MANAGER,
    ) -> Obj:
        """`field_manager` owns what the object sets (None: `obj` carries its managedFields,
        as a server-side apply makes them)."""
        await self.consistent()
        meta = objects.meta(obj)
        if res.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        adm = self.admitting()
        if adm is None:  # (filled in first: the keys' order of the answers stays as it was)
            _fill_system_meta(res, meta)
        if not res.crd:
            defaults.apply_defaults(res.kind, obj)
            if res.storage_version:  # in its storage version from here on
                obj = self.crds.stored_form(res, obj)
                meta = obj["metadata"]
        if field_manager is not None:
            self.track_fields(res, None, obj, field_manager, "")
        if adm is not None:  # mutating webhooks: before the registry fills in the metadata
            meta.setdefault("creationTimestamp", None)  # (what Go's zero Time encodes to)
            adm_attrs = admissionmod.attrs(
                res, "CREATE", namespace, str(meta.get("name") or ""), dry_run=dry_run
            )
            obj = await self._mutate(adm, adm_attrs, res, obj, None, "")
            meta = obj["metadata"]
            _fill_system_meta(res, meta)
        self.hooks.prepare_create(res, obj)
        errs = validation.validate_object_meta(
            meta, namespaced=res.namespaced, name_rule=res.name_rule
        )
        if not res.crd:
            errs += validation.validate(res.kind, obj)
        else:
            errs += self.crds.validate(res, obj, None)
        errs += self.hooks.validate(res, obj, None)
        errs += admission_match.configuration_errors(res.group, res.kind, obj, None)
        if errs:
            raise _invalid(res, obj, errs)
        self._check_namespace(res, namespace, str(meta.get("name", "")))
        if adm is not None:  # validating webhooks
            await adm.validate(adm_attrs, self.crds.served(res, obj), None)
        name = meta["name"]
        key = res.key(namespace, name)
        try:
            self.hooks.before_write(res, obj, None)
            if dry_run:
                if key in self.cacher.get(res.key_prefix).objects:
                    raise errors.already_exists(res.plural, res.group, name)
                return self.crds.served(res, obj)
            enc: cachemod.Encoded | None = None
            try:
                stored = await self.crds.to_storage(res, obj) if res.crd else obj
                value, enc = self._encode(res, key, stored)
                kv = await self.backend.create(key, value)
            except storage.KeyExistsError:
                if meta.get("generateName") and meta["name"].startswith(meta["generateName"]):
                    raise errors.StatusError(
                        409,
                        "AlreadyExists",
                        f'{res.qualified} "{name}" already exists, the server was not able to '
                        f"generate a unique name for the object",
                        group=res.group,
                        kind=res.plural,
                        name=name,
                    ) from None
                raise errors.already_exists(res.plural, res.group, name) from None
            except storage.UnavailableError as e:
                raise errors.service_unavailable(str(e)) from e
            finally:
                if enc is not None:
                    self.cacher.unexpect(key, enc)
        finally:
            self.hooks.after_write(res, obj)
        meta["resourceVersion"] = str(kv.mod_revision)
        return self.crds.served(res, obj)

    def _encode(
        self, res: registry.Resource, key: str, stored: Obj
    ) -> tuple[bytes, cachemod.Encoded | None]:
        """The bytes to store for `stored`; the watch cache is told to expect them, so that it
        takes the object over from its encoding instead of decoding the bytes again (the
        caller calls `cacher.unexpect` once the write is over)."""
        paths = res.field_selectors if self.cacher.wants_fields(res.key_prefix) else None
        value, enc = cachemod.encode(stored, paths)
        if enc is not None:
            self.cacher.expect(key, enc)
        return value, enc

    async def update(
        self,
        res: registry.Resource,
        namespace: str,
        name: str,
        obj: Obj,
        *,
        subresource: str = "",
        dry_run: bool = False,
        field_manager: str | None = SERVER_MANAGER,
    ) -> Obj:
        meta = objects.meta(obj)
        if meta.get("name", name) != name:
            raise errors.bad_request(
                "the name of the object (%s) does not match the name on the URL (%s)"
                % (meta.get("name"), name)
            )
        await self.consistent()
        current = self.peek(res, namespace, name)
        if current is None:
            raise errors.not_found(res.plural, res.group, name)
        if res.crd:  # as the requested version serves it
            current = await self.crds.view(res, current)
        uid, cur_uid = meta.get("uid") or "", current.obj["metadata"].get("uid")
        if uid and uid != cur_uid:  # an update's uid is a precondition (as the storage checks it)
            raise errors.conflict(
                res.plural,
                res.group,
                name,
                f"StorageError: invalid object, Code: 4, Key: {res.key(namespace, name)}, "
                "ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in "
                f"precondition: {uid}, UID in object meta: {cur_uid}",
            )
        rv = meta.get("resourceVersion") or ""
        if rv and rv != current.obj["metadata"]["resourceVersion"]:
            raise errors.stale_conflict(res.plural, res.group, name)
        try:
            out = await self._write_update(res, current, obj, subresource, dry_run, field_manager)
            return self.crds.served(res, out)
        except _Retry:  # changed in the store after the cache was read: a conflict, not a 500
            raise errors.stale_conflict(res.plural, res.group, name) from None

    async def guaranteed_update(
        self,
        res: registry.Resource,
        namespace: str,
        name: str,
        mutate: Callable[[Obj], Obj],
        *,
        subresource: str = "",
        dry_run: bool = False,
        field_manager: str | None = SERVER_MANAGER,
        managed_as: str | None = None,
        direct: bool = False,
    ) -> Obj:
        """Read-modify-write with retries on conflict (patch, scale, finalizer removal).
        `mutate` gets a deep copy of the current object and returns the desired one; when the
        result carries a resourceVersion different from the current, that is a conflict.
        `field_manager` owns what changed (None: `mutate` sets managedFields itself, as apply
        does), recorded for subresource `managed_as` (default: `subresource`). `direct` (a
        built-in kind only) stores what `mutate` returns as it is, as kube's registry writes a
        pod binding straight to storage: no strategy, defaulting, managedFields, UPDATE
        admission, validation, generation or hooks (nor a decoding of the current object)."""
        for _ in range(MAX_CONFLICT_RETRIES):
            await self.consistent()
            current = self.peek(res, namespace, name)
            if current is None:
                raise errors.not_found(res.plural, res.group, name)
            # what `mutate` sees: the object as the requested version serves it
            seen = await self.crds.view(res, current) if res.converted else current
            if res.crd:  # written in that version too (built-in kinds: in their storage one)
                current = seen
            # a cached built-in object's resourceVersion is its revision
            cur_rv = str(current.revision) if direct else current.obj["metadata"]["resourceVersion"]
            # a private copy: decoding the cached JSON is much cheaper than copy.deepcopy
            desired = mutate(orjson.loads(seen.json))
            drv = objects.meta(desired).get("resourceVersion")
            if drv and drv != cur_rv:
                raise errors.stale_conflict(res.plural, res.group, name)
            try:
                out = await self._write_update(
                    res, current, desired, subresource, dry_run, field_manager, managed_as, direct
                )
                return self.crds.served(res, out)
            except _Retry:
                continue
        raise errors.stale_conflict(res.plural, res.group, name)

    async def _write_update(
        self,
        res: registry.Resource,
        current: cachemod.CachedObject,
        obj: Obj,
        subresource: str,
        dry_run: bool,
        field_manager: str | None = SERVER_MANAGER,
        managed_as: str | None = None,
        direct: bool = False,
    ) -> Obj:
        if direct:  # see guaranteed_update
            new = obj
            nmeta = new["metadata"]
        else:
            old = current.obj
            if res.storage_version:  # compared, validated and stored in its storage version
                obj = self.crds.stored_form(res, obj)
            new = strategy.prepare_update(res, obj, old, subresource)
            if not res.crd and subresource not in ("status", "binding"):  # a binding is not decoded
                defaults.apply_defaults(res.kind, new)
            if field_manager is not None:
                sub = subresource if managed_as is None else managed_as
                self.track_fields(res, old, new, field_manager, sub)
            adm = self.admitting()
            if adm is not None:  # mutating webhooks
                adm_attrs = admissionmod.attrs(
                    res,
                    "UPDATE",
                    old["metadata"].get("namespace", ""),
                    old["metadata"]["name"],
                    subresource=managed_as or subresource,
                    dry_run=dry_run,
                )
                new = await self._mutate(adm, adm_attrs, res, new, old, subresource)
            self.hooks.prepare_update(res, new, old)
            nmeta = new["metadata"]
            # a status update of a kind whose status strategy checks the metadata update and the
            # status alone (the spec is the stored one: webhooks' patches are prepared again)
            errs_or_none = (
                validation.validate_status_update(res.kind, new, old)
                if subresource == "status" and not res.crd
                else None
            )
            if errs_or_none is not None:
                errs = errs_or_none
            else:
                errs = validation.validate_object_meta(
                    nmeta, namespaced=res.namespaced, name_rule=res.name_rule
                )
                errs += validation.validate_object_meta_update(nmeta, old["metadata"])
                if not res.crd:
                    errs += validation.validate(res.kind, new)
                    if subresource != "binding":  # binding sets spec.nodeName, as the registry does
                        errs += validation.validate_update(res.kind, new, old)
                else:
                    errs += self.crds.validate(res, new, old)
            errs += self.hooks.validate(res, new, old)
            errs += admission_match.configuration_errors(res.group, res.kind, new, old)
            if errs:
                raise _invalid(res, new, errs)
            if adm is not None:  # validating webhooks
                served = self.crds.served
                await adm.validate(adm_attrs, served(res, new), served(res, old))
            if (res.has_spec or res.crd) and objects.spec_part(new) != objects.spec_part(old):
                nmeta["generation"] = int(old["metadata"].get("generation") or 0) + 1
            # an object being deleted goes away once its last finalizer is removed
            if (
                nmeta.get("deletionTimestamp")
                and not nmeta.get("finalizers")
                and not self.hooks.blocks_deletion(res, new)
            ):
                if dry_run:
                    return new
                return await self._delete_now(res, current, new, dry_run)
            if new == old:
                return old  # no-op: no write, same resourceVersion, as Kubernetes
        if dry_run:
            return new
        nmeta.pop("resourceVersion", None)
        if not direct:
            self.hooks.before_write(res, new, old)
        stored = await self.crds.to_storage(res, new) if res.crd else new
        enc: cachemod.Encoded | None = None
        try:
            value, enc = self._encode(res, current.key, stored)
            if direct and _unchanged(current, value, enc):
                return current.obj  # as kube's storage: identical bytes are not written
            kv = await self.backend.update(current.key, value, current.revision)
        except storage.ConflictError:
            raise _Retry() from None
        except storage.NotFoundError:
            raise errors.not_found(res.plural, res.group, nmeta["name"]) from None
        finally:
            if enc is not None:
                self.cacher.unexpect(current.key, enc)
            if not direct:
                self.hooks.after_write(res, new)
        nmeta["resourceVersion"] = str(kv.mod_revision)
        return new

    async def _mutate(
        self,
        adm: admissionmod.Admission,
        attrs: admissionmod.Attrs,
        res: registry.Resource,
        obj: Obj,
        old: Obj | None,
        subresource: str,
    ) -> Obj:
        """`obj` after the mutating webhooks, which see it (and `old`) as the request's version
        serves it."""
        if not res.storage_version:
            return await adm.mutate(attrs, obj, old, subresource) or obj
        seen = self.crds.served(res, obj)
        old_seen = None if old is None else self.crds.served(res, old)
        out = await adm.mutate(attrs, seen, old_seen, subresource)
        return obj if out is None or out is seen else self.crds.stored_form(res, out)

    async def _delete_now(
        self, res: registry.Resource, current: cachemod.CachedObject, last: Obj, dry_run: bool
    ) -> Obj:
        if dry_run:
            return last
        try:
            kv = await self.backend.delete(current.key, current.revision)
        except storage.ConflictError:
            raise _Retry() from None
        except storage.NotFoundError:
            raise errors.not_found(res.plural, res.group, current.obj["metadata"]["name"]) from None
        out = objects.copy_json(last)
        out["metadata"]["resourceVersion"] = str(kv.mod_revision)
        for cb in self.on_deleted:
            cb(res, out)
        return out

    async def delete(
        self, res: registry.Resource, namespace: str, name: str, opts: DeleteOptions
    ) -> tuple[Obj, bool]:
        """Returns (object, deleted_now). Objects with finalizers, namespaces and pods bound to
        a node are only marked (deletionTimestamp) and stay until released."""
        served = self.crds.served  # the object as the requested version serves it
        for _ in range(MAX_CONFLICT_RETRIES):
            await self.consistent()
            current = self.peek(res, namespace, name)
            if current is None:
                raise errors.not_found(res.plural, res.group, name)
            cmeta = current.obj["metadata"]
            if opts.precondition_uid and opts.precondition_uid != cmeta.get("uid"):
                raise errors.conflict(
                    res.plural,
                    res.group,
                    name,
                    f"Precondition failed: UID in precondition: {opts.precondition_uid}, "
                    f"UID in object meta: {cmeta.get('uid')}",
                )
            if opts.precondition_rv and opts.precondition_rv != cmeta.get("resourceVersion"):
                raise errors.conflict(
                    res.plural,
                    res.group,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: "
                    f"{opts.precondition_rv}, ResourceVersion in object meta: "
                    f"{cmeta.get('resourceVersion')}",
                )
            adm = self.admitting()
            if adm is not None:  # webhooks see DELETE with the object as oldObject
                await adm.admit_delete(res, namespace, name, served(res, current.obj), opts)
            grace = self.hooks.grace_period(res, current.obj, opts.grace_period)
            own = list(cmeta.get("finalizers") or [])
            policy = opts.propagation or _default_policy(res, own)
            if opts.propagation or policy == "Orphan":
                # the garbage collector deletes (Foreground) or releases (Orphan) dependents
                own = [f for f in own if f not in _GC_FINALIZERS.values()]
                if policy in _GC_FINALIZERS:
                    own.append(_GC_FINALIZERS[policy])
            finalizers = list(own)
            if res.kind == "Namespace" and not res.group:
                finalizers += (current.obj.get("spec") or {}).get("finalizers") or []
            if not finalizers and grace == 0:
                try:
                    out = await self._delete_now(res, current, current.obj, opts.dry_run)
                    return served(res, out), True
                except _Retry:
                    continue
            new = orjson.loads(current.json)
            nmeta = new["metadata"]
            if not nmeta.get("deletionTimestamp"):
                when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=grace)
                nmeta["deletionTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
                nmeta["deletionGracePeriodSeconds"] = grace
            elif grace < int(nmeta.get("deletionGracePeriodSeconds") or 0):
                nmeta["deletionGracePeriodSeconds"] = grace  # shortening is allowed
            elif own == list(cmeta.get("finalizers") or []):
                return served(res, current.obj), False
            if own:
                nmeta["finalizers"] = own
            self.hooks.mark_deleting(res, new)
            if opts.dry_run:
                return served(res, new), False
            enc: cachemod.Encoded | None = None
            try:
                nmeta.pop("resourceVersion", None)
                value, enc = self._encode(res, current.key, new)
                kv = await self.backend.update(current.key, value, current.revision)
            except storage.ConflictError:
                continue
            finally:
                if enc is not None:
                    self.cacher.unexpect(current.key, enc)
            nmeta["resourceVersion"] = str(kv.mod_revision)
            return served(res, new), False
        raise errors.stale_conflict(res.plural, res.group, name)


_CRDS = next(r for r in registry.BUILTIN if r.kind == "CustomResourceDefinition")
_GC_FINALIZERS = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}
# kinds whose dependents are orphaned when a delete names no policy (as in Kubernetes)
_ORPHAN_BY_DEFAULT = {("", "ReplicationController"), ("batch", "Job")}


def _default_policy(res: registry.Resource, finalizers: list[str]) -> str:
    """The propagation policy of a delete that names none: what the object's own GC
    finalizer says, else the kind's default."""
    for policy, fin in _GC_FINALIZERS.items():
        if fin in finalizers:
            return policy
    return "Orphan" if (res.group, res.kind) in _ORPHAN_BY_DEFAULT else "Background"


def _unchanged(current: cachemod.CachedObject, value: bytes, enc: cachemod.Encoded | None) -> bool:
    """Whether the stored bytes `value` (`enc` their encoding) hold `current`'s object."""
    if enc is not None:  # the cached JSON is that encoding with the resourceVersion in place
        return b'%s"%d"%s' % (enc.head, current.revision, enc.tail) == current.json
    old = orjson.loads(current.json)
    old["metadata"].pop("resourceVersion", None)
    return bool(orjson.loads(value) == old)


class _Retry(Exception):
    """The object changed between read and write; the caller re-reads."""


def _invalid(res: registry.Resource, obj: Obj, errs: list[errors.FieldError]) -> errors.StatusError:
    """The 422 of `obj`, its fields named as the request's version names them."""
    if res.storage_version:
        errs = conversion.field_errors(obj, res.api_version, errs)
    return errors.invalid(res.kind, res.group, str(obj["metadata"].get("name", "")), errs)


def _fill_system_meta(res: registry.Resource, meta: Obj) -> None:
    """kube's BeforeCreate: the generated name and the fields the registry owns."""
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = objects.generate_name(str(meta["generateName"]))
    for f in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
        meta.pop(f, None)
    meta["uid"] = objects.new_uid()
    meta["creationTimestamp"] = objects.now_rfc3339()
    if res.has_spec or res.crd:
        meta["generation"] = 1
    else:
        meta.pop("generation", None)
