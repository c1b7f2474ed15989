"""kybern's own small images, built on the machine from Debian's `busybox-static` (`/bin/busybox`)
so that nothing is fetched from the internet: `busybox` (a shell and the usual tools as applet
symlinks, `/etc/passwd`, `/tmp`) and `pause`, the pod sandbox image, whose process is a busybox
shell that sleeps, reaps the children it adopts and exits 0 on SIGTERM/SIGINT. Both share one
layer, so a runtime stores the binary once. The builders are pure (the binary is passed in as
bytes); `read_busybox` checks that the file is a static executable."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path

from kybern.images import oci

BUSYBOX_PATH = Path("/bin/busybox")
BUSYBOX_IMAGE = "kybern.local/busybox:1"
PAUSE_IMAGE = "kybern.local/pause:1"

# Applets linked into /bin (all present in Debian's busybox-static).
APPLETS: tuple[str, ...] = (
    "[", "ash", "awk", "base64", "basename", "cat", "chmod", "chown", "cp", "cut", "date", "dd",
    "df", "dirname", "du", "echo", "env", "expr", "false", "find", "free", "grep", "gunzip",
    "gzip", "head", "hostname", "httpd", "id", "ifconfig", "ip", "kill", "killall", "less", "ln",
    "ls", "md5sum", "mkdir", "mkfifo", "mktemp", "mount", "mv", "nc", "netstat",
    "nslookup", "od", "ping", "printf", "ps", "pwd", "readlink", "realpath", "rm",
    "rmdir", "sed", "seq", "sh", "sha256sum", "sleep", "sort", "stat", "sync", "tail", "tar",
    "tee", "telnet", "test", "timeout", "top", "touch", "tr", "true", "umount", "uname", "uniq",
    "uptime", "vi", "wc", "wget", "which", "whoami", "xargs", "yes",
)  # fmt: skip

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n"

# The sandbox process: PID 1 of the pod, so it handles TERM/INT itself (the kernel ignores
# signals without a handler for PID 1) and `wait` reaps every child, including adopted orphans.
# A TERM in the shell's first moments (before it blocks in `wait`) can be lost: busybox ash may
# drop a trapped signal that arrives while it sets up the loop. Runtimes stop sandboxes with
# SIGKILL, so only a hand-sent early TERM meets that window.
PAUSE_SCRIPT = "trap 'exit 0' TERM INT; while :; do sleep 2147483647 & wait; done"


class BusyboxError(RuntimeError):
    """`/bin/busybox` is missing or is not a static executable."""


def read_busybox(path: Path = BUSYBOX_PATH) -> bytes:
    """Read the busybox binary, refusing a dynamically linked one (it would not run in an image
    that has no libc): blocking file I/O, call it from a thread on an event loop."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BusyboxError(
            f"{path} not found: install Debian's busybox-static (apt-get install busybox-static)"
        ) from None
    if not is_static_elf(data):
        raise BusyboxError(
            f"{path} is not a statically linked executable: install busybox-static, which "
            "replaces the dynamic busybox package"
        )
    return data


def is_static_elf(data: bytes) -> bool:
    """True for an ELF executable without a program interpreter (PT_INTERP)."""
    if data[:4] != b"\x7fELF" or len(data) < 64:
        return False
    is64, little = data[4] == 2, data[5] == 1

    def u(off: int, size: int) -> int:
        return int.from_bytes(data[off : off + size], "little" if little else "big")

    if is64:
        phoff, phentsize, phnum = u(32, 8), u(54, 2), u(56, 2)
    else:
        phoff, phentsize, phnum = u(28, 4), u(42, 2), u(44, 2)
    for i in range(phnum):
        if u(phoff + i * phentsize, 4) == 3:  # PT_INTERP
            return False
    return True


def base_layer(busybox: bytes, applets: Sequence[str] = APPLETS) -> oci.Layer:
    """The shared root filesystem: /bin/busybox, its applet links and a minimal /etc."""
    entries = [
        oci.Entry.dir("bin"),
        oci.Entry.file("bin/busybox", busybox, 0o755),
        oci.Entry.dir("etc"),
        oci.Entry.file("etc/passwd", PASSWD.encode()),
        oci.Entry.file("etc/group", GROUP.encode()),
        oci.Entry.dir("root", 0o700),
        oci.Entry.dir("tmp", 0o1777),
        oci.Entry.dir("var"),
        oci.Entry.dir("var/www"),
        oci.Entry.dir("usr"),
        oci.Entry.dir("usr/bin"),
        oci.Entry.symlink("usr/bin/env", "/bin/busybox"),
    ]
    entries += [oci.Entry.symlink(f"bin/{name}", "busybox") for name in sorted(set(applets))]
    return oci.build_layer(entries)


def build_busybox(
    busybox: bytes, name: str = BUSYBOX_IMAGE, *, layer: oci.Layer | None = None
) -> oci.Image:
    """The `busybox` image: default command `sh`."""
    return oci.build_image(
        name,
        [layer or base_layer(busybox)],
        cmd=["sh"],
        architecture=oci.go_arch(platform.machine()),
    )


def build_pause(
    busybox: bytes, name: str = PAUSE_IMAGE, *, layer: oci.Layer | None = None
) -> oci.Image:
    """The sandbox image: `sh -c PAUSE_SCRIPT` as PID 1 of every pod."""
    return oci.build_image(
        name,
        [layer or base_layer(busybox)],
        entrypoint=["/bin/sh", "-c", PAUSE_SCRIPT],
        stop_signal="SIGTERM",
        architecture=oci.go_arch(platform.machine()),
    )


def build_all(
    busybox: bytes, busybox_name: str = BUSYBOX_IMAGE, pause_name: str = PAUSE_IMAGE
) -> tuple[oci.Image, oci.Image]:
    """Both images over one shared layer: `(busybox, pause)`."""
    layer = base_layer(busybox)
    return (
        build_busybox(busybox, busybox_name, layer=layer),
        build_pause(busybox, pause_name, layer=layer),
    )


def build_layout(path: Path = BUSYBOX_PATH) -> bytes:
    """Read busybox and return one OCI layout tarball with both images (blocking)."""
    busybox, pause = build_all(read_busybox(path))
    return oci.layout_tar([busybox, pause])
