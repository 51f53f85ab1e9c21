"""One progress bar for long loops (rich, on stderr): items done, a running accuracy or loss, tokens/s.

Drawn only when stderr is a terminal (a pipe, a file or CI gets nothing) and the user did not ask for
quiet (``--quiet`` calls ``set_quiet``; library callers pass ``enabled=False``). On stderr so that
``latentbench eval … | tee log`` keeps the bar on screen and the log clean.

    with progress_bar("gsm8k cot", total=60, enabled=req.show_progress) as bar:
        for outcome in outcomes:
            bar.advance(tokens=outcome.generated_tokens, correct=verdict)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_quiet = False


def set_quiet(quiet: bool = True) -> None:
    """Process-wide: no bars at all (the CLI's ``--quiet``), the model download/conversion bars included.
    When none may be drawn, the Hub's and transformers' tqdm bars are turned off too (they would write
    their frames into a pipe or a log file); set before those libraries are imported, which read it then."""
    global _quiet
    _quiet = quiet
    if not interactive():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def interactive() -> bool:
    """Whether bars and status lines may be drawn: stderr is a terminal and quiet was not asked for."""
    if _quiet:
        return False
    from rich.console import Console

    return Console(file=sys.stderr).is_terminal


class Bar:
    """Counts what a loop did and formats its running stats; nothing is drawn without a rich ``progress``."""

    def __init__(self, progress: Any = None, job: Any = None) -> None:
        self._progress, self._job, self._start = progress, job, time.perf_counter()
        self.drawn = progress is not None  # callers may skip work that only the bar would show
        self.done, self.tokens, self.correct, self.scored = 0, 0, 0, 0
        self.loss: float | None = None

    def advance(self, n: int = 1, *, tokens: int = 0, correct: bool | None = None,
                loss: float | None = None) -> None:
        """``n`` more items done; ``tokens`` they generated; ``correct``: the item's verdict (a running
        accuracy); ``loss``: the latest training loss."""
        self.done += n
        self.tokens += tokens
        if correct is not None:
            self.correct, self.scored = self.correct + bool(correct), self.scored + 1
        if loss is not None:
            self.loss = loss
        if self._progress is not None:
            self._progress.update(self._job, advance=n, stats=self.stats())

    def stats(self) -> str:
        """e.g. ``acc 0.417 (5/12)  35.2 tok/s`` or ``loss 0.5321  3.1 it/s``."""
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        parts = []
        if self.scored:
            parts.append(f"acc {self.correct / self.scored:.3f} ({self.correct}/{self.scored})")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.tokens:
            parts.append(f"{self.tokens / elapsed:.1f} tok/s")
        elif self.done:
            parts.append(f"{self.done / elapsed:.2f} it/s")
        return "  ".join(parts)


@contextmanager
def progress_bar(label: str, total: int, enabled: bool = True) -> Iterator[Bar]:
    """A bar for ``total`` items, drawn when ``enabled`` and ``interactive()``; yields its ``Bar``."""
    if not (enabled and interactive()):
        yield Bar()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=sys.stderr)) as progress:
        yield Bar(progress, progress.add_task(label, total=total, stats=""))
