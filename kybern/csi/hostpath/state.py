"""The hostpath driver's durable state: every volume and snapshot it made, as a JSON document
(`<data-dir>/state.json`, replaced atomically on each change) next to the data itself — volume
directories (`volumes/<id>/`), block volumes' sparse image files (`volumes/<id>.img`, attached
through loop devices) and snapshots (`snapshots/<id>.tgz` of a directory, `snapshots/<id>.img`
of an image). Also records which nodes a volume is published to and where it is staged and
published on this node, so every RPC can be answered idempotently after a driver restart."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class Volume:
    id: str
    name: str
    capacity: int
    block: bool = False
    ephemeral: bool = False
    source_snapshot: str = ""
    source_volume: str = ""
    parameters: dict[str, str] = dataclasses.field(default_factory=dict)
    published: dict[str, bool] = dataclasses.field(default_factory=dict)  # node id -> readonly
    staged: dict[str, list[Any]] = dataclasses.field(default_factory=dict)  # path -> capability
    targets: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def content_source(self) -> tuple[str, str]:
        return (self.source_snapshot, self.source_volume)


@dataclasses.dataclass
class Snapshot:
    id: str
    name: str
    source_volume_id: str
    created: float
    size: int
    block: bool = False
    ready: bool = True


@dataclasses.dataclass
class State:
    root: Path
    volumes: dict[str, Volume] = dataclasses.field(default_factory=dict)
    snapshots: dict[str, Snapshot] = dataclasses.field(default_factory=dict)

    @property
    def file(self) -> Path:
        return self.root / "state.json"

    @property
    def volumes_dir(self) -> Path:
        return self.root / "volumes"

    @property
    def snapshots_dir(self) -> Path:
        return self.root / "snapshots"

    def volume_path(self, v: Volume) -> Path:
        return self.volumes_dir / (f"{v.id}.img" if v.block else v.id)

    def snapshot_path(self, s: Snapshot) -> Path:
        return self.snapshots_dir / (f"{s.id}.img" if s.block else f"{s.id}.tgz")

    def volume_by_name(self, name: str) -> Volume | None:
        return next((v for v in self.volumes.values() if v.name == name), None)

    def snapshot_by_name(self, name: str) -> Snapshot | None:
        return next((s for s in self.snapshots.values() if s.name == name), None)

    def allocated(self) -> int:
        return sum(v.capacity for v in self.volumes.values())

    # ---- persistence (blocking) ---------------------------------------------------------------

    @classmethod
    def load(cls, root: Path) -> State:
        st = cls(root)
        root.mkdir(parents=True, exist_ok=True)
        st.volumes_dir.mkdir(exist_ok=True)
        st.snapshots_dir.mkdir(exist_ok=True)
        if st.file.exists():
            doc = json.loads(st.file.read_text())
            st.volumes = {k: Volume(**v) for k, v in doc.get("volumes", {}).items()}
            st.snapshots = {k: Snapshot(**s) for k, s in doc.get("snapshots", {}).items()}
        return st

    def snapshot_doc(self) -> bytes:
        doc = {
            "volumes": {k: dataclasses.asdict(v) for k, v in self.volumes.items()},
            "snapshots": {k: dataclasses.asdict(s) for k, s in self.snapshots.items()},
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    def write(self, doc: bytes) -> None:
        tmp = self.file.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(doc)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.file)
