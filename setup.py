"""Build step only (metadata lives in pyproject.toml): the wheel carries the task cards and schemas.

The top-level ``tasks/`` and ``schemas/`` stay the sources; a built package gets copies under
``latentbench/_data/``, where ``latentbench.paths`` looks first. An editable install reads the
top-level directories directly, so nothing is copied for it.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = {"tasks": "*.yaml", "schemas": "*.json"}


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for name, pattern in SHIPPED.items():
            target = Path(self.build_lib) / "latentbench" / "_data" / name
            target.mkdir(parents=True, exist_ok=True)
            for source in sorted(Path(name).glob(pattern)):
                shutil.copy2(source, target / source.name)


setup(cmdclass={"build_py": BuildPyWithData})
