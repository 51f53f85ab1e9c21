"""The runner that executes model-written code inside the sandbox, and the plain-data codec it speaks.

Run as ``__main__`` in the sandbox (standard library only: every run pays for its imports), in one of
three modes:

* ``inputs``: load ``in/program.py``, call its entry point on each argument tuple of ``in/job`` (MBPP+)
  and send back each return value;
* ``serve``: the same, for argument tuples that arrive one at a time on stdin (HumanEval);
* ``check``: run a HumanEval ``check(candidate)`` (``in/program.py``: the prompt, ``in/test.py``: the
  test) where ``candidate`` asks the evaluator, which asks the ``serve`` sandbox: the test never shares
  a process with the program it judges.

A return value leaves the runner only as plain data (``encode``: marshal format 2 of None, bool, int,
float, complex, str, bytes, tuple, list, dict, set, frozenset; anything else, a subclass with its own
``__eq__`` included, is an error), and whatever bytes arrive are read back by ``decode``, written in
Python, so hostile bytes can neither run code nor crash the reader. latentbench imports this module for
``decode`` and ``digest``; the program's process never sees expected outputs.

Protocol: frames of one kind byte, a 4-byte big-endian length and a payload, on a private copy of
stdin/stdout (the program's own stdin, stdout and stderr are /dev/null). From the runner: ``R`` ready,
``L`` load failure, ``V`` value, ``D`` digest, ``E`` error (``V`` and ``D`` payloads start with the
call's duration, a float64); from ``check``: ``C`` call (marshalled argument tuple), ``P`` pass, ``F``
failure. To ``serve``: ``C`` calls; to ``check``: the ``serve`` runner's replies.
"""

from __future__ import annotations

import marshal
import os
import struct
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing alone would add ~10 ms to every sandboxed run's start
    from typing import Any

BIG_BYTES = 1 << 20  # ``auto``: larger outputs travel as a digest (exact comparisons only)
CHUNK = 1024  # items per marshal call when digesting a long list or tuple (keeps memory flat)
NOT_NONE_TASKS = frozenset({737, 787, 794})  # MBPP+ regex tasks: only "matched or not" counts
ORACLE_TASKS = frozenset({2, 7, 111, 140, 232, 579, 769, 737, 787, 794, 581, 558})  # compared loosely
MAX_DEPTH = 100
_INT, _DOUBLE, _COMPLEX, HEAD = struct.Struct("<i"), struct.Struct("<d"), struct.Struct("<dd"), struct.Struct(">cI")
_DICT_TYPES = ("collections.Counter", "collections.OrderedDict", "collections.defaultdict")


# --- plain data ------------------------------------------------------------------------------------

def encode(value: Any) -> bytes:
    """Marshal format 2 of plain data (no references, so equal values give equal bytes); ValueError
    for anything else. ``Counter``, ``OrderedDict`` and ``defaultdict`` are read as plain dicts."""
    try:
        return marshal.dumps(value, 2)
    except ValueError:
        return marshal.dumps(_plain_dicts(value, 0), 2)


def encode_upto(value: Any, limit: int | None) -> bytes | None:
    """``encode(value)``, or None when that is longer than ``limit`` (a long list or tuple is measured a
    chunk at a time, so a huge one is never encoded whole)."""
    if limit is not None and type(value) in (list, tuple) and len(value) > CHUNK:
        size = 0
        for i in range(0, len(value), CHUNK):
            size += len(encode(value[i : i + CHUNK]))
            if size > limit:
                return None
    data = encode(value)
    return None if limit is not None and len(data) > limit else data


def _plain_dicts(x: Any, depth: int) -> Any:
    kind = type(x)
    if depth > MAX_DEPTH:
        raise ValueError("nested too deeply")
    if f"{kind.__module__}.{kind.__qualname__}" in _DICT_TYPES:
        return {_plain_dicts(k, depth + 1): _plain_dicts(v, depth + 1) for k, v in dict.items(x)}
    if kind in (list, tuple, set, frozenset):
        return kind(_plain_dicts(v, depth + 1) for v in x)
    if kind is dict:
        return {_plain_dicts(k, depth + 1): _plain_dicts(v, depth + 1) for k, v in x.items()}
    return x


def digest(value: Any) -> bytes:
    """sha256 of ``encode(value)``, a long list or tuple a chunk at a time (never one giant buffer)."""
    import hashlib

    h = hashlib.sha256()
    if type(value) in (list, tuple):
        h.update(b"%s%d:" % (type(value).__name__.encode(), len(value)))
        for i in range(0, len(value), CHUNK):
            h.update(encode(value[i : i + CHUNK]))
    else:
        h.update(b"v" + encode(value))
    return h.digest()


def decode(data: bytes, deadline: float | None = None) -> Any:
    """Plain data back from ``encode``'s bytes, which may be hostile: only the plain types come out,
    nesting is capped, and building a set or dict stops at ``deadline`` (crafted hash collisions would
    otherwise take quadratic time). ValueError for anything else."""
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(data):
            raise ValueError("truncated")
        pos += n
        return data[pos - n : pos]

    def count() -> int:
        return _INT.unpack(take(4))[0]

    def item(depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ValueError("nested too deeply")
        code = take(1)
        if code in b"NTF":
            return {b"N": None, b"T": True, b"F": False}[code]
        if code == b"i":
            return count()
        if code == b"l":
            n = count()
            return (-1 if n < 0 else 1) * _join(struct.unpack(f"<{abs(n)}H", take(2 * abs(n))))
        if code == b"g":
            return _DOUBLE.unpack(take(8))[0]
        if code == b"y":
            return complex(*_COMPLEX.unpack(take(16)))
        if code == b"s":
            return take(count())
        if code == b"u":
            return take(count()).decode("utf-8", "surrogatepass")
        if code in (b"(", b"[", b"<", b">"):
            items = (item(depth + 1) for _ in range(count()))
            if code == b"(":
                return tuple(items)
            if code == b"[":
                return list(items)
            return build_set(items, deadline) if code == b"<" else frozenset(build_set(items, deadline))
        if code == b"{":
            def pairs() -> Any:
                while data[pos : pos + 1] != b"0":
                    yield item(depth + 1), item(depth + 1)
                take(1)
            return _build(dict, pairs(), deadline)
        raise ValueError(f"not plain data (type code {code!r})")

    try:
        value = item(0)
    except (struct.error, TypeError, UnicodeDecodeError, RecursionError, KeyError) as err:
        raise ValueError(f"malformed data: {type(err).__name__}") from err
    if pos != len(data):
        raise ValueError("trailing bytes")
    return value


def build_set(items: Any, deadline: float | None = None) -> set:
    """``set(items)``, stopping at ``deadline``: crafted hash collisions (ints are easy) would otherwise
    make it quadratic."""
    return _build(set, items, deadline)


def _build(kind: type, items: Any, deadline: float | None) -> Any:
    out = kind()
    add = out.add if kind is set else out.__setitem__
    for item in items:
        add(*item) if kind is dict else add(item)
        if deadline is not None and time.monotonic() > deadline:
            raise ValueError("too slow to read")
    return out


def _join(digits: tuple[int, ...]) -> int:
    """The int whose little-endian base-2**15 digits these are (halving: linear even for huge ints)."""
    if len(digits) <= 64:
        value = 0
        for d in reversed(digits):
            value = value << 15 | d
        return value
    half = len(digits) // 2
    return _join(digits[half:]) << 15 * half | _join(digits[:half])


def is_floats(x: Any) -> bool:
    """A float or a flat list/tuple of floats: compared with a tolerance, as EvalPlus does."""
    if type(x) is float:
        return True
    return type(x) in (list, tuple) and bool(x) and all(type(v) is float for v in x)


# --- the runner (inside the sandbox) ------------------------------------------------------------------

class Channel:
    """Frames over two file descriptors."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        view = memoryview(HEAD.pack(kind, len(payload)) + payload)
        while view:
            view = view[os.write(self.wfd, view) :]

    def recv(self) -> tuple[bytes, bytes]:
        kind, n = HEAD.unpack(self._read(5))
        return kind, self._read(n)

    def _read(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = os.read(self.rfd, n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return bytes(buf)


def why(err: BaseException) -> str:
    """One short line naming an exception (the program's own text, truncated)."""
    text = str(err).splitlines()[0][:100] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def reply(channel: Channel, fn: Any, args: tuple, want: int, oracle: int) -> None:
    """Call ``fn(*args)`` and send the result: ``want`` 0 a value, 1 a digest, 2 a digest only when the
    value is big and compared exactly (computing expected outputs)."""
    start = time.perf_counter()
    try:
        out = fn(*args)
    except BaseException as err:  # anything the program raises fails this input
        channel.send(b"E", why(err).encode("utf-8", "replace"))
        return
    if oracle in NOT_NONE_TASKS and type(out) is not bool:
        out = out is not None  # an identity test: no method of the program's object runs
    try:
        data = None if want == 1 else encode_upto(out, BIG_BYTES if want == 2 else None)
        if data is None and (want == 1 or (oracle not in ORACLE_TASKS and not is_floats(out))):
            kind, data = b"D", digest(out)
        else:
            kind, data = b"V", encode(out) if data is None else data
    except ValueError:
        channel.send(b"E", f"returned a non-plain value ({type(out).__name__})".encode())
        return
    # the time includes encoding: it sets the per-input limits, which the evaluator measures the same way
    channel.send(kind, _DOUBLE.pack(time.perf_counter() - start) + data)


def load(source: str, filename: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__solution__"}  # not __main__: the program's main guard stays off
    exec(compile(source, filename, "exec"), namespace)
    return namespace


class CandidateError(Exception):
    """What the program raised (or why its value was refused), seen from ``check``."""


def check(channel: Channel, entry_point: str) -> None:
    """Run the test's ``check`` against a stand-in that forwards each call to the program's sandbox."""

    def candidate(*args: Any) -> Any:
        channel.send(b"C", marshal.dumps(args, 2))
        kind, payload = channel.recv()
        if kind != b"V":
            raise CandidateError(payload.decode("utf-8", "replace")[:200] or "no value returned")
        return decode(payload[8:])

    with open("in/program.py", encoding="utf-8") as f:
        prompt = f.read()
    with open("in/test.py", encoding="utf-8") as f:
        test = f.read()
    try:
        namespace = load(prompt, "prompt.py")  # the prompt's helpers (HumanEval/32's poly), never the program's
    except SyntaxError:
        namespace = {"__name__": "__check__"}
    namespace[entry_point] = candidate  # HumanEval/33's test calls the entry point by name
    try:
        exec(compile(test, "test.py", "exec"), namespace)
        namespace["check"](candidate)
    except BaseException as err:
        channel.send(b"F", (str(err)[:200] if isinstance(err, CandidateError) else why(err)).encode())
        return
    channel.send(b"P")


def main() -> None:
    mode, entry_point, oracle = sys.argv[1], sys.argv[2], int(sys.argv[3])
    channel = Channel(os.dup(0), os.dup(1))
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if mode == "check":
        check(channel, entry_point)
        os._exit(0)
    job = None
    if mode == "inputs":
        with open("in/job", "rb") as f:
            job = marshal.loads(f.read())  # written by latentbench: trusted
    try:
        with open("in/program.py", encoding="utf-8") as f:
            fn = load(f.read(), "program.py")[entry_point]
    except BaseException as err:
        channel.send(b"L", why(err).encode("utf-8", "replace"))
        os._exit(0)
    channel.send(b"R")
    if job is not None:
        for args, want in job:
            reply(channel, fn, args, want, oracle)
    else:
        while True:
            try:
                _, payload = channel.recv()
            except EOFError:
                break
            reply(channel, fn, marshal.loads(payload), 0, oracle)
    os._exit(0)  # skip the program's atexit hooks and non-daemon threads


if __name__ == "__main__":
    main()
