"""Runs inside the sandbox as ``__main__`` (never imported by latentbench): loads the candidate program,
calls it on each input with a per-input time limit, compares with the expected outputs, and prints the
run's random token only after every test ran. Standard library only: every run pays for its imports.
"""

import base64
import copy
import math
import os
import pickle
import signal
import sys
import time

SET_EQ_TASKS = {2, 7, 111, 140, 232, 579, 769}  # MBPP+: the order of the returned items does not matter
NOT_NONE_TASKS = {737, 787, 794}  # MBPP+ regex tasks: only "matched or not" counts


class Timeout(BaseException):  # BaseException: the program's `except Exception` must not swallow it
    pass


def on_alarm(signum, frame):
    raise Timeout


def is_floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(v, float) for v in x)
    return type(x).__name__ == "ndarray" and str(getattr(x, "dtype", "")) in ("float32", "float64")


def oracle_ok(task, out, exp, args, atol, exact):
    # EvalPlus's special oracles: tasks whose reference output is one of several fair readings
    if task in SET_EQ_TASKS:
        return set(out) == set(exp)
    if task in NOT_NONE_TASKS:
        return out == exp if isinstance(out, bool) else exp == (out is not None)
    if task == 581:  # surface_Area: "height" may also mean the perpendicular height
        b, h = args
        return exact or abs(out - round(b * b + 2 * b * math.sqrt((b / 2) ** 2 + h * h))) <= atol
    if task == 558:  # digit_distance_nums: the numbers may also be zero-padded to one length
        a, b = (str(v) for v in args)
        a, b = a.zfill(max(len(a), len(b))), b.zfill(max(len(a), len(b)))
        return exact or out == sum(abs(int(x) - int(y)) for x, y in zip(a, b, strict=False))
    return exact


def matches(out, exp, args, atol, task):
    exact = oracle_ok(task, out, exp, args, atol, bool(out == exp))
    tol = 1e-6 if atol == 0 and is_floats(exp) else atol
    if exact or tol == 0:
        return exact
    if type(out) is not type(exp) or (isinstance(exp, (list, tuple)) and len(out) != len(exp)):
        return False
    import numpy as np
    return bool(np.allclose(out, exp, rtol=1e-7, atol=tol))


def why(err):
    if isinstance(err, Timeout):
        return "timeout"
    text = str(err).splitlines()[0][:80] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def call_reference(fn, args, task):
    out = fn(*copy.deepcopy(args))  # the reference may mutate its arguments
    return out is not None if task in NOT_NONE_TASKS else out


def run_phase(fn, job, phase, reference):
    inputs, expected, limits, recompute = job[phase]
    for i, (args, exp, limit) in enumerate(zip(inputs, expected, limits, strict=True)):
        if i in recompute:  # too big to ship: the reference runs here, outside the time limit
            exp = call_reference(reference, args, job["oracle"])
        try:
            signal.setitimer(signal.ITIMER_REAL, limit)
            ok = matches(fn(*args), exp, args, job["atol"], job["oracle"])
            signal.setitimer(signal.ITIMER_REAL, 0)
        except BaseException as err:  # anything the program raises fails this input
            signal.setitimer(signal.ITIMER_REAL, 0)
            return f"fail input {i}: {why(err)}"
        if not ok:
            return f"fail input {i}: wrong output"
    return "pass"


def expected_phase(fn, job, phase):
    outputs, times, recompute = [], [], []
    for i, args in enumerate(job[phase][0]):
        start = time.perf_counter()
        out = call_reference(fn, args, job["oracle"])
        times.append(time.perf_counter() - start)
        if len(pickle.dumps(out)) > job["big"]:
            out = None
            recompute.append(i)
        outputs.append(out)
    return {phase: outputs, phase + "_time": times, phase + "_recompute": recompute}


def load(source, filename, entry_point=None):
    namespace = {"__name__": "__solution__"}  # not __main__: the program's main guard stays off
    exec(compile(source, filename, "exec"), namespace)
    return namespace[entry_point] if entry_point else namespace


def main():
    token = sys.stdin.readline().strip()
    write, channel = os.write, os.dup(1)

    def report(phase, outcome):
        write(channel, f"{token} {phase} {outcome}\n".encode())

    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    with open("in/job.pkl", "rb") as f:
        job = pickle.load(f)
    signal.signal(signal.SIGALRM, on_alarm)
    # the reference loads before the program can patch shared modules
    reference = load(job["reference"], "reference.py", job["entry_point"]) if job.get("reference") else None
    try:
        with open("in/program.py", encoding="utf-8") as f:
            namespace = load(f.read(), "program.py")
        if job["mode"] == "humaneval":
            exec(compile(job["test"], "test.py", "exec"), namespace)
        fn = namespace[job["entry_point"]]
    except BaseException as err:
        report("load", "fail " + why(err))
        os._exit(0)
    if job["mode"] == "humaneval":
        try:
            namespace["check"](fn)
            report("base", "pass")
        except BaseException as err:
            report("base", "fail " + why(err))
    elif job["mode"] == "expected":
        try:
            result = {**expected_phase(fn, job, "base"), **expected_phase(fn, job, "plus")}
            report("expected", base64.b64encode(pickle.dumps(result)).decode())
        except BaseException as err:
            report("error", why(err))
    elif (outcome := run_phase(fn, job, "base", reference)) == "pass":
        report("base", "pass")
        report("plus", run_phase(fn, job, "plus", reference))
    else:
        report("base", outcome)
    os._exit(0)  # skip the program's atexit hooks and non-daemon threads


main()
