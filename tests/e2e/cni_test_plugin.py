"""A small CNI plugin for the tests (stdlib only, copied executable into a temporary bin dir).
It speaks the real protocol and records every call: CNI_* environment and stdin go, one JSON
line per call, to the `record` file named in `<executable>.json` (a sidecar, since VERSION gets
no configuration), which also sets `supportedVersions` and `stateDir`. Behaviour per call comes
from the plugin's own configuration keys:

- ADD: touches no network device; it returns `prevResult` (or an empty result) plus the
  address in `addIP` (if any), rendered at the configuration's version; `fail` ({"code", "msg",
  "details"}) makes it fail; `hang` makes it sleep far beyond any test timeout (its pid is
  recorded first); it keeps a state file per (container id, ifname) in `stateDir` so that
  CHECK, DEL and GC have something real to act on. `resultVersion` renders the result at
  another version than asked (as old plugins do), `noResult` prints nothing, `garbage` prints
  junk and exits 3, and `delay` (seconds) makes ADD and DEL take that long (an `end` record
  follows), so tests can see which calls overlapped.
- DEL removes that state file (and succeeds if there is none); CHECK fails if it is missing or
  `prevResult` is absent; GC removes state files not in `cni.dev/valid-attachments`; STATUS
  fails with code 50 when `unavailable` is true.
"""

import json
import os
import sys
import time


def load_sidecar():
    path = os.path.realpath(sys.argv[0]) + ".json"
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def record(side, entry):
    path = side.get("record")
    if not path:
        return
    line = json.dumps(entry, sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def vtuple(v):
    parts = [int(p) for p in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def fail(version, code, msg, details=""):
    out = {"cniVersion": version, "code": code, "msg": msg}
    if details:
        out["details"] = details
    sys.stdout.write(json.dumps(out))
    sys.exit(1)


def render(result, version):
    """A result (1.x shape) at `version`: 0.3.x/0.4.0 need `version` on each IP."""
    out = dict(result)
    out["cniVersion"] = version
    if vtuple(version) < (1, 0, 0):
        ips = []
        for ip in out.get("ips", []):
            ip = dict(ip)
            ip["version"] = "6" if ":" in ip["address"] else "4"
            ips.append(ip)
        if ips:
            out["ips"] = ips
        out.setdefault("dns", {})
    return out


def state_path(side, cid, ifname):
    return os.path.join(side.get("stateDir", "/nonexistent"), f"{cid}--{ifname}")


def main():
    side = load_sidecar()
    supported = side.get("supportedVersions", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    command = os.environ.get("CNI_COMMAND", "")
    raw = sys.stdin.read()
    try:
        conf = json.loads(raw) if raw.strip() else {}
    except ValueError:
        conf = {"_unparsable": raw}
    env = {k: v for k, v in os.environ.items() if k.startswith("CNI_")}
    start = time.time()
    record(
        side,
        {
            "command": command,
            "env": dict(os.environ),
            "start": start,
            "stdin": conf,
            "pid": os.getpid(),
            "argv0": os.path.basename(sys.argv[0]),
        },
    )
    version = conf.get("cniVersion", "0.1.0")
    if command == "VERSION":
        sys.stdout.write(json.dumps({"cniVersion": supported[-1], "supportedVersions": supported}))
        return
    if version not in supported:
        fail(
            supported[-1],
            1,
            "incompatible CNI versions",
            f"config is {version!r}, plugin supports {supported}",
        )
    if command in ("GC", "STATUS") and vtuple(version) < (1, 1, 0):
        fail(version, 4, f"{command} needs CNI 1.1.0")
    cid = env.get("CNI_CONTAINERID", "")
    ifname = env.get("CNI_IFNAME", "")
    if command in ("ADD", "DEL") and conf.get("delay"):
        time.sleep(conf["delay"])
        record(
            side,
            {
                "command": command,
                "end": time.time(),
                "start": start,
                "argv0": os.path.basename(sys.argv[0]),
                "env": dict(os.environ),
            },
        )
    if command == "ADD" and conf.get("garbage"):
        sys.stdout.write("this is not JSON")
        sys.stderr.write("something went wrong in the test plugin\n")
        sys.exit(3)
    if command == "ADD":
        if conf.get("hang"):
            time.sleep(3600)
        if conf.get("fail"):
            f = conf["fail"]
            fail(version, f.get("code", 100), f.get("msg", "failed"), f.get("details", ""))
        result = dict(conf.get("prevResult") or {})
        result.pop("cniVersion", None)
        for ip in result.get("ips", []):
            ip.pop("version", None)
        if conf.get("addIP"):
            result.setdefault("ips", []).append({"address": conf["addIP"]})
        os.makedirs(side.get("stateDir", "/nonexistent"), exist_ok=True)
        with open(state_path(side, cid, ifname), "w") as f:
            f.write(conf.get("type", ""))
        if not conf.get("noResult"):
            sys.stdout.write(json.dumps(render(result, conf.get("resultVersion", version))))
    elif command == "DEL":
        try:
            os.unlink(state_path(side, cid, ifname))
        except FileNotFoundError:
            pass
    elif command == "CHECK":
        if "prevResult" not in conf:
            fail(version, 7, "CHECK without prevResult")
        if not os.path.exists(state_path(side, cid, ifname)):
            fail(version, 100, f"no state for {cid}/{ifname}")
    elif command == "GC":
        valid = {(a["containerID"], a["ifname"]) for a in conf.get("cni.dev/valid-attachments", [])}
        d = side.get("stateDir", "/nonexistent")
        for name in os.listdir(d) if os.path.isdir(d) else []:
            key = tuple(name.split("--", 1))
            if key not in valid:
                os.unlink(os.path.join(d, name))
    elif command == "STATUS":
        if conf.get("unavailable"):
            fail(version, 50, "plugin not available", "the test asked for it")
    else:
        fail(version, 4, f"unknown CNI_COMMAND: {command}")


if __name__ == "__main__":
    main()
