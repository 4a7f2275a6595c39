"""The host stays out of reach: secrets, root, system dirs and kernel knobs, mounts, setuid, ptrace, modules, network.

Probes never change the host: host-wide settings are only written back with the value read
first, ``/proc/sysrq-trigger`` and other write-only files are only *opened* for writing (nothing
is written), module syscalls are called with arguments that cannot load anything, and every
connection goes to 127.0.0.1. Files a probe would create on the host carry a random name and are
removed (and the test fails) if they ever appear.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import platform
import secrets
import socket
from pathlib import Path

import pytest

from tests.abuse import hostscan
from tests.abuse.conftest import SECRET_VAR, Arena, brief, wait_until

pytestmark = [pytest.mark.abuse]


def host_file_state(path: str) -> tuple[str, int] | None:
    """(sha256, mtime_ns) of a host file, or None."""
    try:
        data = Path(path).read_bytes()
        return hashlib.sha256(data).hexdigest(), os.stat(path).st_mtime_ns
    except OSError:
        return None


def fields(output: str) -> dict[str, str]:
    """``key=value`` lines of a probe's output."""
    out = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def test_host_secrets_are_not_visible(arena: Arena) -> None:
    """/etc/shadow and friends are empty or not the host's, /root, /home, the Docker socket and the test's
    dirs are not the host's, and neither the test process's secret env var nor the server's token is visible."""
    sb = arena.sandbox()
    secret = os.environ[SECRET_VAR]
    hidden = ["/root", "/home", "/run/docker.sock", "/var/run/docker.sock", "/var/lib/docker", "/work"]
    hidden += [str(arena.scope.base), str(Path.home() / ".ssh"), "/run"]
    secret_files = ["/etc/shadow", "/etc/gshadow", "/etc/sudoers", *map(str, Path("/etc/ssh").glob("ssh_host_*_key"))]
    probe = "\n".join(
        [f"printf '%s %s\\n' '{p}' \"$(stat -L -c '%d:%i' '{p}' 2>/dev/null || echo -)\"" for p in hidden]
        + [f"printf '%s %s\\n' '{p}' \"$(sha256sum '{p}' 2>/dev/null | cut -c1-64 || echo -)\"" for p in secret_files]
    )
    result = sb.run(probe, timeout=30)
    assert result.exit_code == 0, brief(result)
    seen = dict(line.split(" ", 1) for line in result.output.splitlines() if " " in line)
    problems = []
    for path in hidden:
        host = hostscan.stat_id(path)
        if host is not None and seen.get(path) == host:
            problems.append(f"{path} is the host's (same device and inode)")
    for path in secret_files:
        state = host_file_state(path)
        inside = seen.get(path, "-")
        if state is not None and inside == state[0]:
            problems.append(f"{path} has the host's content")
    environ = sb.run(
        "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\\0' '\\n' < $f; echo; done 2>/dev/null; env",
        timeout=30,
    )
    if secret in environ.output:
        problems.append(f"the test process's ${SECRET_VAR} is visible inside")
    if arena.target.remote and arena.token in environ.output:
        problems.append("the server's API token is visible inside")
    one_shot = sb.exec("env; cat /proc/1/environ", timeout=30)
    if secret in one_shot.output or (arena.target.remote and arena.token in one_shot.output):
        problems.append("a secret is visible to exec()")
    assert not problems, "\n".join(problems)
    arena.finish()


def test_root_inside_is_not_root_outside(arena: Arena) -> None:
    """``id -u`` is 0 inside; on namespace the same process is an unprivileged uid on the host, without capabilities."""
    sb = arena.sandbox()
    who = sb.run("id -u; grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status", timeout=30)
    assert who.exit_code == 0 and who.output.splitlines()[0] == "0", brief(who)
    status = {k: v.strip() for k, v in (line.split(":", 1) for line in who.output.splitlines()[1:])}
    mark = f"2345.{secrets.randbelow(10**6):06d}"
    sb.run(f"sleep {mark} >/dev/null 2>&1 &")
    assert wait_until(lambda: hostscan.find_pids(f"sleep {mark}"), 10), "the sandbox's sleep is not on the host"
    host_uids = {pid: hostscan.uids_of(pid) for pid in hostscan.find_pids(f"sleep {mark}")}
    assert status.get("NoNewPrivs") == "1", status
    if arena.target.runtime == "namespace":
        for pid, uids in host_uids.items():
            assert uids and 0 not in uids and os.geteuid() not in uids, f"host pid {pid} runs as uids {uids}"
        for key in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
            assert int(status[key], 16) == 0, f"{key}={status[key]} inside a namespace sandbox"
    else:
        # root in a container is host root: what keeps it in is the capability set (never privileged)
        dangerous = {2: "DAC_READ_SEARCH", 12: "NET_ADMIN", 13: "NET_RAW", 16: "SYS_MODULE", 17: "SYS_RAWIO"}
        dangerous |= {18: "SYS_CHROOT", 19: "SYS_PTRACE", 21: "SYS_ADMIN", 22: "SYS_BOOT", 25: "SYS_TIME"}
        dangerous |= {27: "MKNOD", 32: "MAC_OVERRIDE", 33: "MAC_ADMIN", 34: "SYSLOG", 38: "PERFMON", 39: "BPF"}
        for key in ("CapEff", "CapBnd"):
            held = [name for bit, name in dangerous.items() if int(status[key], 16) >> bit & 1]
            assert not held, f"{key} holds {held}"
    sb.run(f"pkill -f 'sleep {mark}'")
    arena.finish()


WRITE_PROBE = r"""
tok=$1
for d in /etc /usr /usr/bin /bin /lib /sbin / /proc /sys; do
  : 2>/dev/null > "$d/rock-env-abuse-$tok" && echo "created=$d/rock-env-abuse-$tok"
done
: 2>/dev/null >> /etc/passwd && echo "opened=/etc/passwd"
for f in /proc/sys/kernel/core_pattern /proc/sys/kernel/modprobe /proc/sys/vm/overcommit_memory; do
  v=$(cat "$f" 2>/dev/null) || continue
  printf '%s\n' "$v" 2>/dev/null > "$f" && echo "wrote=$f"
done
echo 1 2>/dev/null > /proc/sys/vm/drop_caches && echo "wrote=/proc/sys/vm/drop_caches"
for f in /proc/sysrq-trigger /proc/sys/kernel/sysrq /proc/kcore /sys/kernel/mm/transparent_hugepage/enabled \
         /sys/fs/cgroup/pids/release_agent /sys/fs/cgroup/memory/release_agent /sys/kernel/uevent_helper \
         /sys/power/state; do
  [ -e "$f" ] || continue
  : 2>/dev/null > "$f" && echo "opened=$f"
done
thp=$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)
[ -n "$thp" ] && echo "$thp" 2>/dev/null > /sys/kernel/mm/transparent_hugepage/enabled && echo "wrote=/sys/thp"
echo done=1
"""

HOST_KNOBS = (
    "/proc/sys/kernel/core_pattern",
    "/proc/sys/kernel/modprobe",
    "/proc/sys/vm/overcommit_memory",
    "/proc/sys/kernel/sysrq",
    "/sys/kernel/mm/transparent_hugepage/enabled",
    "/etc/passwd",
    "/etc/hostname",
)


def test_writes_to_system_dirs_and_kernel_knobs_fail(arena: Arena) -> None:
    """Writes to /etc, /usr, /proc/sys, /proc/sysrq-trigger and /sys fail; the host's values are unchanged."""
    sb = arena.sandbox()
    tok = secrets.token_hex(6)
    before = {path: host_file_state(path) for path in HOST_KNOBS}
    sb.write_file("probe.sh", WRITE_PROBE)
    result = sb.run(f"bash /workspace/probe.sh {tok}", timeout=60)
    assert "done=1" in result.output, brief(result)
    problems = []
    for line in result.output.splitlines():
        kind, _, path = line.partition("=")
        if kind == "created" and arena.target.runtime == "docker" and not path.startswith(("/proc/", "/sys/")):
            continue  # the container's own root file system (the image's copy), not the host's
        if kind == "opened" and path == "/etc/passwd" and arena.target.runtime == "docker":
            continue
        if kind in ("created", "opened", "wrote"):
            problems.append(line)
    for directory in ("/etc", "/usr", "/usr/bin", "/bin", "/lib", "/sbin", "/"):
        leaked = Path(directory) / f"rock-env-abuse-{tok}"
        if leaked.exists():
            with contextlib.suppress(OSError):
                leaked.unlink()
            problems.append(f"{leaked} appeared on the host")
    after = {path: host_file_state(path) for path in HOST_KNOBS}
    problems += [f"host {path} changed" for path in HOST_KNOBS if before[path] != after[path]]
    assert not problems, "\n".join(problems)
    arena.finish()


MOUNT_PROBE = r"""
mkdir -p /tmp/mnt-probe
mount -t tmpfs x /tmp/mnt-probe >/dev/null 2>&1; echo "mount_tmpfs=$?"
mount -t tmpfs x /mnt >/dev/null 2>&1; echo "mount_mnt=$?"
mount --bind /tmp /tmp/mnt-probe >/dev/null 2>&1; echo "mount_bind=$?"
mount -o remount,rw / >/dev/null 2>&1; echo "remount_root=$?"
mount -t proc proc /tmp/mnt-probe >/dev/null 2>&1; echo "mount_proc=$?"
unshare -r true >/dev/null 2>&1; echo "unshare_r=$?"
unshare -U true >/dev/null 2>&1; echo "unshare_U=$?"
unshare -m true >/dev/null 2>&1; echo "unshare_m=$?"
unshare -n true >/dev/null 2>&1; echo "unshare_n=$?"
chroot / /bin/true >/dev/null 2>&1; echo "chroot=$?"
nsenter -t 1 -m true >/dev/null 2>&1; echo "nsenter=$?"
grep -q ' /tmp/mnt-probe ' /proc/self/mounts; echo "mounted_after=$?"
"""


def test_mount_and_unshare_fail(arena: Arena) -> None:
    """``mount``, ``unshare -r``/``-U``/``-m``, ``chroot`` and ``nsenter`` all fail inside."""
    sb = arena.sandbox()
    sb.write_file("probe.sh", MOUNT_PROBE)
    result = sb.run("bash /workspace/probe.sh", timeout=60)
    got = fields(result.output)
    assert "mounted_after" in got, brief(result)
    succeeded = [key for key, value in got.items() if key != "mounted_after" and value == "0"]
    assert not succeeded, f"these worked inside the sandbox: {succeeded} ({got})"
    assert got["mounted_after"] != "0", "a mount appeared"
    arena.finish()


SETUID_PROBE = r"""
n=$1
cp /bin/bash /tmp/suidbash && chmod 4755 /tmp/suidbash
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
if as_nobody true 2>/dev/null; then
  echo "nobody_suidbash=$(as_nobody /tmp/suidbash -p -c 'id -u' 2>&1 | tail -n1)"
  echo "nobody_su=$(as_nobody su -c 'id -u' root </dev/null 2>&1 | tail -n1)"
  echo "nobody_passwd=$(as_nobody passwd -S root </dev/null 2>&1 | tail -n1 | cut -c1-40)"
else
  echo "nobody=unmapped"
fi
echo "suid_caps=$(/tmp/suidbash -p -c 'grep ^CapEff /proc/self/status' | awk '{print $2}')"
(su -c "exec sleep $n" root </dev/null >/dev/null 2>&1 &)
(/usr/bin/passwd -S root </dev/null >/dev/null 2>&1)
echo done=1
"""


def test_setuid_binaries_do_not_gain_privileges(arena: Arena) -> None:
    """A setuid-root copy of bash, ``su`` and ``passwd`` give no privilege: no uid change, no capabilities, not host root."""
    sb = arena.sandbox()
    mark = f"3456.{secrets.randbelow(10**6):06d}"
    sb.write_file("probe.sh", SETUID_PROBE)
    result = sb.run(f"bash /workspace/probe.sh {mark}", timeout=60)
    got = fields(result.output)
    assert got.get("done") == "1", brief(result)
    if got.get("nobody") != "unmapped":
        assert got.get("nobody_suidbash") == "65534", f"a setuid bash run by nobody: euid {got.get('nobody_suidbash')}"
        assert got.get("nobody_su") != "0", f"su run by nobody became root: {got}"
    if arena.target.runtime == "namespace":
        assert int(got.get("suid_caps") or "0", 16) == 0, f"capabilities after a setuid exec: {got}"
        # su (setuid root on the host's /usr) ran a sleep: it must not be host root
        wait_until(lambda: hostscan.find_pids(f"sleep {mark}"), 3)
        for pid in hostscan.find_pids(f"sleep {mark}"):
            assert 0 not in hostscan.uids_of(pid), f"su inside made host root: pid {pid} {hostscan.uids_of(pid)}"
    arena.finish()


PTRACE_PROBE = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
for arg in sys.argv[1:]:
    pid = int(arg)
    ctypes.set_errno(0)
    r = libc.ptrace(16, pid, None, None)  # PTRACE_ATTACH
    e = ctypes.get_errno()
    if r == 0:
        libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
    print(f"ptrace_{pid}={r},{e}")
own = str(os.getpid())
pids = [p for p in os.listdir("/proc") if p.isdigit()]
print(f"visible={len(pids)}")
for p in pids:
    try:
        cmd = open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        continue
    if any(w in cmd for w in ("pytest", "rock_env.cli", "xdist", "dockerd", "containerd", "systemd")):
        print(f"host_process={p} {cmd[:80]}")
print("done=1")
"""


def test_ptrace_of_outside_processes_fails(arena: Arena) -> None:
    """PTRACE_ATTACH to the host pids of the test process (and the server) fails; no host process is visible."""
    sb = arena.sandbox()
    targets = [os.getpid()] + ([arena.server.pid] if arena.server is not None else [])
    sb.write_file("ptrace.py", PTRACE_PROBE)
    result = sb.run(f"python3 /workspace/ptrace.py {' '.join(map(str, targets))}", timeout=60)
    got = fields(result.output)
    assert got.get("done") == "1", brief(result)
    for pid in targets:
        code, _, err = got[f"ptrace_{pid}"].partition(",")
        assert code == "-1", f"PTRACE_ATTACH to host pid {pid} returned {code}"
        assert int(err) in (errno.ESRCH, errno.EPERM), f"PTRACE_ATTACH to {pid}: errno {err}"
    host_processes = [line for line in result.output.splitlines() if line.startswith("host_process=")]
    assert not host_processes, f"host processes visible inside: {host_processes}"
    assert int(got["visible"]) < 64, f"{got['visible']} processes visible inside"
    arena.finish()


MODULE_SYSCALLS = {
    "x86_64": {"init_module": 175, "delete_module": 176, "finit_module": 313},
    "aarch64": {"init_module": 105, "delete_module": 106, "finit_module": 273},
}
MODULE_PROBE = r"""
import ctypes, json, os, sys
nrs = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *args)
    return r, ctypes.get_errno()
# arguments that cannot load anything, even with CAP_SYS_MODULE: an empty image, a bad fd, a module that does not exist
print("init_module=%d,%d" % call(nrs["init_module"], ctypes.c_void_p(0), ctypes.c_ulong(0), ctypes.c_char_p(b"")))
print("finit_module=%d,%d" % call(nrs["finit_module"], ctypes.c_int(-1), ctypes.c_char_p(b""), ctypes.c_int(0)))
print("delete_module=%d,%d" % call(nrs["delete_module"], ctypes.c_char_p(b"rock_env_abuse_none"), ctypes.c_int(os.O_NONBLOCK)))
print("done=1")
"""


def test_loading_kernel_modules_fails(arena: Arena) -> None:
    """init_module/finit_module/delete_module fail with EPERM (no CAP_SYS_MODULE); ``modprobe`` and ``insmod`` fail."""
    nrs = MODULE_SYSCALLS.get(platform.machine())
    if nrs is None:
        pytest.skip(f"no module syscall numbers for {platform.machine()}")
    import json

    sb = arena.sandbox()
    modules = Path("/proc/modules")
    modules_before = modules.read_text() if modules.exists() else None
    sb.write_file("modules.py", MODULE_PROBE)
    result = sb.run(f"python3 /workspace/modules.py '{json.dumps(nrs)}'", timeout=60)
    got = fields(result.output)
    assert got.get("done") == "1", brief(result)
    for name in ("init_module", "finit_module", "delete_module"):
        code, _, err = got[name].partition(",")
        # EPERM: no CAP_SYS_MODULE (or a seccomp filter); ENOSYS: a kernel built without module support
        assert code == "-1" and int(err) in (errno.EPERM, errno.ENOSYS), f"{name}: returned {code}, errno {err}"
    modprobe = sb.run(
        "modprobe rock_env_abuse_none >/dev/null 2>&1; echo rc=$?; insmod /dev/null >/dev/null 2>&1; echo rc=$?"
    )
    assert "rc=0" not in modprobe.output, brief(modprobe)
    assert (modules.read_text() if modules.exists() else None) == modules_before, "the host's module list changed"
    arena.finish()


EGRESS_PROBE = r"""
import socket, sys
for arg in sys.argv[1:]:
    try:
        s = socket.create_connection(("127.0.0.1", int(arg)), timeout=3)
        s.close()
        print(f"port_{arg}=connected")
    except OSError as exc:
        print(f"port_{arg}=failed {exc.errno}")
print("done=1")
"""


def test_egress_with_network_off(arena: Arena) -> None:
    """With network off, a connect to a port the test listens on at the host's 127.0.0.1 (and to the server) fails."""
    sb = arena.sandbox()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    try:
        ports = [listener.getsockname()[1]]
        if arena.server is not None:
            ports.append(int(arena.url.rsplit(":", 1)[1]))
        sb.write_file("egress.py", EGRESS_PROBE)
        result = sb.run(f"python3 /workspace/egress.py {' '.join(map(str, ports))}", timeout=60)
        got = fields(result.output)
        assert got.get("done") == "1", brief(result)
        connected = [port for port in ports if got.get(f"port_{port}") == "connected"]
        assert not connected, f"the sandbox reached host 127.0.0.1 ports {connected} with network off"
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    arena.finish()
