"""The sandbox's seccomp filter, as classic BPF bytes for ``bwrap --seccomp`` / the rlimits bootstrap:
no new processes, no signals or tracing of any process (docs/sandbox.md)."""

from __future__ import annotations

import errno
import platform
import struct

_ARCHES = {  # audit arch, syscall numbers
    "x86_64": (0xC000003E, {"fork": 57, "vfork": 58, "clone": 56, "clone3": 435},
               (62, 200, 234, 129, 297, 101, 310, 311, 424, 434, 438, 440)),
    "aarch64": (0xC00000B7, {"clone": 220, "clone3": 435},
                (129, 130, 131, 138, 240, 117, 270, 271, 424, 434, 438, 440)),
}  # the tuple: kill, tkill, tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo, ptrace, process_vm_readv/writev,
#    pidfd_send_signal, pidfd_open, pidfd_getfd, process_madvise
_CLONE_THREAD = 0x00010000
_RET_ALLOW, _RET_ERRNO, _RET_KILL = 0x7FFF0000, 0x00050000, 0x80000000


def seccomp_program(machine: str | None = None, *, allow_processes: bool = False) -> bytes | None:
    """A classic-BPF filter. Signalling or tracing syscalls kill the process (a program that tries to
    kill its parent or the harness fails, whatever it catches); unless ``allow_processes``,
    fork/vfork/clone without CLONE_THREAD get EAGAIN and clone3 (whose flags a filter cannot read)
    ENOSYS so libc falls back to clone. Other ABIs on the same CPU get ENOSYS."""
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit_arch, nrs, deadly = arch
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    prog: list[tuple[int, str | int, str | int, int]] = [
        (ld, 0, 0, 4), (jeq, 0, "nosys", audit_arch), (ld, 0, 0, 0)]
    if "fork" in nrs:  # x86_64: the x32 ABI shares the audit arch; its numbers carry bit 30
        prog.append((jge, "nosys", 0, 0x40000000))
    prog += [(jeq, "kill", 0, nr) for nr in deadly]
    if not allow_processes:
        prog += [(jeq, "again", 0, nrs[name]) for name in ("fork", "vfork") if name in nrs]
        prog += [(jeq, "nosys", 0, nrs["clone3"]), (jeq, 0, "allow", nrs["clone"]),
                 (ld, 0, 0, 16), (jset, "allow", "again", _CLONE_THREAD)]
    labels = {"allow": len(prog), "again": len(prog) + 1, "nosys": len(prog) + 2, "kill": len(prog) + 3}
    prog += [(ret, 0, 0, _RET_ALLOW), (ret, 0, 0, _RET_ERRNO | errno.EAGAIN),
             (ret, 0, 0, _RET_ERRNO | errno.ENOSYS), (ret, 0, 0, _RET_KILL)]
    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(prog):
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        out += struct.pack("=HBBI", code, jt, jf, k)
    return bytes(out)
