"""What the sandbox binds read-only into bubblewrap's empty root: the interpreter, its shared library and
standard library, the system libraries, and the site-packages model-written code may import."""

from __future__ import annotations

import os
import sys
import sysconfig
from functools import cache
from importlib.util import find_spec
from pathlib import Path

SANDBOX_PACKAGES = ("numpy",)  # site-packages that model-written code may import (read-only)


@cache
def interpreter() -> str:
    """The real interpreter binary (not a venv's link to it): the one file the sandbox must run."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


@cache
def package_roots() -> tuple[str, ...]:
    """Directories holding ``SANDBOX_PACKAGES`` (PYTHONPATH inside; -S skips site hooks, which for an
    editable install alone cost ~60 ms per start)."""
    return tuple(dict.fromkeys(str(Path(p).parent) for p in _package_dirs()))


@cache
def _package_dirs() -> tuple[str, ...]:
    """Each installed package of ``SANDBOX_PACKAGES``, with its wheel's bundled libraries (``numpy.libs``)."""
    dirs = []
    for name in SANDBOX_PACKAGES:
        spec = find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            root = Path(next(iter(spec.submodule_search_locations)))
            dirs += [str(d) for d in (root, root.with_name(f"{name}.libs")) if d.is_dir()]
    return tuple(dirs)


@cache
def system_binds() -> tuple[str, ...]:
    """bwrap arguments for what the interpreter needs: itself, its shared library, its standard library
    (with lib-dynload) and the system's shared libraries, all read-only; top-level links kept as links."""
    args: list[str] = []
    for top in ("/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    libpython = Path(sysconfig.get_config_var("LIBDIR") or "/nonexistent") / (sysconfig.get_config_var("INSTSONAME") or "-")
    paths = ["/usr/lib", "/usr/lib32", "/usr/lib64", interpreter(), str(libpython), sysconfig.get_paths()["stdlib"],
             *_package_dirs()]
    for path in dict.fromkeys(os.path.realpath(p) for p in paths):
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    return tuple(args)
