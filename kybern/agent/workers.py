"""The pod workers of a node, by pod uid (kubelet's podWorkers): `update` starts a worker for a
new pod or hands a newer object to its worker, `remove` tells it the pod is gone from its source,
`wake` nudges workers (runtime changes, probe results, changed configMaps), and a worker that
finished tearing its pod down is forgotten, its uid remembered so that a late event cannot start
it again."""

from __future__ import annotations

import logging

from kybern.agent import actions, backoff, common, pods

log = logging.getLogger("kybern.agent")
Obj = common.Obj


class PodWorkers:
    """The workers of every pod on the node, by uid."""

    def __init__(self, ctx: actions.Context, crashloop: backoff.CrashLoopBackOff) -> None:
        self.ctx = ctx
        self.crashloop = crashloop
        self.workers: dict[str, pods.PodWorker] = {}
        self.finished: set[str] = set()  # uids whose worker ended (terminated)

    def update(
        self,
        pod: Obj,
        *,
        target: pods.StatusTarget | None = None,
        delete_from_api: bool = True,
    ) -> pods.PodWorker | None:
        uid = common.pod_uid(pod)
        if not uid or uid in self.finished:
            return None
        w = self.workers.get(uid)
        if w is None:
            w = pods.PodWorker(
                self.ctx,
                pod,
                crashloop=self.crashloop,
                target=target,
                on_done=self._done,
                delete_from_api=delete_from_api,
            )
            self.workers[uid] = w
            log.debug("pod %s: new worker", common.pod_key(pod))
            w.start()
        else:
            w.update(pod)
        return w

    def remove(self, uid: str, last: Obj | None = None) -> None:
        w = self.workers.get(uid)
        if w is not None:
            w.remove(last)

    def wake(self, uids: set[str] | list[str], refresh_volumes: bool = False) -> None:
        for uid in uids:
            w = self.workers.get(uid)
            if w is not None:
                w.wake(refresh_volumes)

    def forget_finished(self, uid: str) -> None:
        """Let a pod with this uid run again (a static pod whose manifest came back)."""
        self.finished.discard(uid)

    def _done(self, uid: str) -> None:
        self.workers.pop(uid, None)
        self.finished.add(uid)
        if len(self.finished) > 10000:
            self.finished = set(list(self.finished)[-5000:])

    async def stop(self) -> None:
        for w in list(self.workers.values()):
            await w.stop()
        self.workers.clear()
