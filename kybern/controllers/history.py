"""ControllerRevisions, the history of a DaemonSet's or StatefulSet's pod template: each
revision stores the template as a replace-patch (`{"spec": {"template": {..., "$patch":
"replace"}}}`) under the name `<owner>-<hash>`, labelled `controller-revision-hash` and owned
by the workload; `sync` finds or creates the revision of the current template (bumping an
old identical revision back to the newest number, so a rollback reuses it), resolving name
collisions with `status.collisionCount`; `cleanup` drops unused revisions beyond the limit."""

from __future__ import annotations

import copy
from typing import Any

from kybern.api import errors, registry
from kybern.client import informer, rest
from kybern.controllers import common
from kybern.controllers import rollout as ro

Obj = dict[str, Any]
HASH_LABEL = "controller-revision-hash"
CR = common.REVISIONS


def revision_data(template: Obj) -> Obj:
    return {"spec": {"template": {**copy.deepcopy(template), "$patch": "replace"}}}


def template_of(rev: Obj) -> Obj:
    t = dict((((rev.get("data") or {}).get("spec") or {}).get("template")) or {})
    t.pop("$patch", None)
    return t


def revision_hash(data: Obj, collision_count: int | None) -> str:
    return ro.template_hash(data, collision_count)


def number(rev: Obj) -> int:
    return int(rev.get("revision") or 0)


def owned(revisions: informer.Informer, owner: Obj) -> list[Obj]:
    return sorted(
        revisions.by_index("controller", owner["metadata"]["uid"]),
        key=lambda r: (number(r), r["metadata"].get("name", "")),
    )


def hash_of(rev: Obj) -> str:
    return str((rev["metadata"].get("labels") or {}).get(HASH_LABEL) or "")


async def sync(
    client: rest.Client,
    revisions: informer.Informer,
    owner: Obj,
    owner_res: registry.Resource,
    template: Obj,
    labels: dict[str, str],
) -> tuple[Obj, list[Obj], int]:
    """The revision of `template` (created or renumbered as the newest), all of the owner's
    revisions, and the collision count to store in the owner's status."""
    revs = owned(revisions, owner)
    data = revision_data(template)
    collisions = int((owner.get("status") or {}).get("collisionCount") or 0)
    latest = max((number(r) for r in revs), default=0)
    same = [r for r in revs if r.get("data") == data]
    if same:
        rev = same[-1]
        if number(rev) < latest:
            new = copy.deepcopy(rev)
            new["revision"] = latest + 1
            rev = await client.update(CR, new)
            revs = [rev if r["metadata"]["uid"] == rev["metadata"]["uid"] else r for r in revs]
        return rev, revs, collisions
    m = owner["metadata"]
    for _ in range(8):
        h = revision_hash(data, collisions or None)
        body: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": f"{m['name']}-{h}",
                "namespace": m["namespace"],
                "labels": {**labels, HASH_LABEL: h},
                "ownerReferences": [common.new_controller_ref(owner, owner_res)],
            },
            "data": data,
            "revision": latest + 1,
        }
        try:
            rev = await client.create(CR, body)
        except errors.StatusError as e:
            if e.code != 409:
                raise
            existing = await client.get(CR, f"{m['name']}-{h}", m["namespace"])
            if existing.get("data") == data and common.owned_by(existing, owner):
                return existing, [*revs, existing], collisions
            collisions += 1
            continue
        return rev, [*revs, rev], collisions
    raise errors.conflict(CR.plural, CR.group, m["name"], "too many revision hash collisions")


async def cleanup(
    client: rest.Client, owner: Obj, revs: list[Obj], live: set[str], limit: int
) -> None:
    """Delete the oldest revisions not named in `live` (hashes in use) beyond `limit`."""
    dead = [r for r in revs if hash_of(r) not in live and r["metadata"]["name"] not in live]
    excess = len(dead) - limit
    for r in sorted(dead, key=number)[: max(excess, 0)]:
        m = r["metadata"]
        await common.ignore_not_found(
            client.delete(CR, m["name"], m["namespace"], uid=m.get("uid", ""))
        )
