"""A writer SIGKILLed at random instants and restarted ends byte-identical to an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from latentbench.store import validate_dataset
from latentbench.store.testing import file_hashes

N_EXAMPLES = 10
# float16 KV keeps torch out of the child, so it starts fast; the sleep inside the example block
# widens the window in which a kill lands with an example half-staged.
CHILD = """
import sys, time
from latentbench.store.writer import DatasetWriter
from latentbench.store.synthetic import INFO, write_latent_tree
path, n = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
w = DatasetWriter(path, kind="latent-tree", info=INFO, extra_kinds=["kv-shard"], chunk_elements=256)
for i in range(n):
    eid = f"synthetic/test/{i}"
    if eid in w.completed_ids():
        continue
    with w.example(eid) as ex:
        write_latent_tree(ex, i, kv_dtype="float16")
        time.sleep(0.08)
    print("committed", flush=True)
w.finalize()
print("done", flush=True)
"""


def _start(path: Path) -> subprocess.Popen:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(N_EXAMPLES)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def _progress(path: Path) -> str:
    if (path / "manifest.json").exists():
        return "finalized"
    entries = len(list((path / ".journal").glob("*.lbj"))) if (path / ".journal").exists() else 0
    return f"{entries} examples" + (" + finalizing" if (path / ".staging").exists() else "")


def test_sigkill_at_random_points_then_resume_is_byte_identical(tmp_path):
    ref = tmp_path / "reference"
    proc = _start(ref)
    t0 = time.monotonic()
    marks = []  # seconds from "ready" to each commit, then to the end of finalize
    for _ in proc.stdout:
        marks.append(time.monotonic() - t0)
    assert proc.wait(timeout=60) == 0 and len(marks) == N_EXAMPLES + 1, proc.stderr.read()
    assert validate_dataset(ref) == []

    rng = random.Random(1234)
    states: list[str] = []  # where each kill landed
    for attempt in range(4):  # a run killed after its commit point ends a sequence early: start another
        path = tmp_path / f"killed-{attempt}"
        _kill_repeatedly(path, marks, rng, states, want=6)
        if not (path / "manifest.json").exists():
            proc = _start(path)  # the restart that completes the dataset
            assert proc.wait(timeout=60) == 0, proc.stderr.read()
        assert not (path / ".journal").exists() and not (path / ".staging").exists()
        assert validate_dataset(path) == []
        assert file_hashes(path) == file_hashes(ref), f"kill states: {states}"
        if len(states) >= 6:
            break
    assert len(states) >= 5, f"only {len(states)} kills landed: {states}"
    assert len(set(states)) >= 2, f"every kill landed in the same state: {states}"


def _kill_repeatedly(path: Path, marks: list[float], rng: random.Random, states: list[str], want: int) -> None:
    """Start the writer and SIGKILL it at a random instant, again and again, until it finishes first."""
    first = True
    while len(states) < want:
        done = len(list((path / ".journal").glob("*.lbj"))) if (path / ".journal").exists() else 0
        if (path / "manifest.json").exists():
            return
        # Spread kills over this run's expected work; the first one lands mid-way through the examples.
        remaining = marks[-1] - (marks[done - 1] if done else 0)
        delay = rng.uniform(0.2, 0.6) * marks[-2] if first else rng.uniform(0, remaining)
        first = False
        proc = _start(path)
        time.sleep(delay)
        if proc.poll() is not None:  # finished before the kill: nothing more to interrupt
            assert proc.returncode == 0, proc.stderr.read()
            return
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        states.append(_progress(path))
