"""``latentbench leaderboard``: results records -> one Markdown page and one plot per task, plus an index.

Everything on a page comes from the records (no clock, no machine state), so rendering the committed
records again gives the same bytes. Rows are grouped by question set (split and N: runs on different
questions are never ranked against each other) and sorted by accuracy within a group. A latent method's
row gets its controls (the same config with ``control=noise`` / ``control=none``) and the text ``cot``
row of the same model listed beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentbench.errors import UsageError

# config fields that change speed, not answers: left out of a row's label and of control matching
NOT_OUTCOME = {"batch_size", "control", "kv_dtype", "seed"}
LATENT = {"latent-mas", "latent-tree", "gcache", "halting"}  # methods with a control= field


@dataclass
class Row:
    path: Path
    record: dict[str, Any]
    metric: str  # primary metric key, e.g. accuracy_flexible or pass@1_plus

    @property
    def task(self) -> str:
        return self.record["task"]["name"]

    @property
    def question_set(self) -> tuple[str, int, bool]:
        """(split, N, full split): rows are ranked only within one question set."""
        t = self.record["task"]
        return t["split"], t["n"], self.record.get("limit") is None

    @property
    def accuracy(self) -> float:
        return float(self.record["metrics"].get(self.metric) or 0.0)

    @property
    def interval(self) -> list[float] | None:
        return self.record.get("intervals", {}).get(self.metric)

    @property
    def config(self) -> dict[str, Any]:
        return self.record["method"]["config"]

    @property
    def control(self) -> str:
        return self.config.get("control", "off")

    def label(self, defaults: dict[str, Any]) -> str:
        """Method name plus the config fields that differ from the method's defaults."""
        changed = [f"{k}={_short(v)}" for k, v in sorted(self.config.items())
                   if k not in NOT_OUTCOME and k in defaults and defaults[k] != v]
        control = [] if self.control == "off" else [f"control={self.control}"]
        return " ".join([self.record["method"]["name"], *changed, *control])

    def outcome_key(self) -> tuple:
        """What a control row shares with the row it controls."""
        return (self.record["method"]["name"], self.record["model"]["id"], self.question_set,
                json.dumps({k: v for k, v in self.config.items() if k not in NOT_OUTCOME}, sort_keys=True))


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= 24 else text[:21] + "..."


def load_rows(paths: list[Path]) -> list[Row]:
    from latentbench.eval.schema import validate_results
    from latentbench.tasks import get_task

    rows = []
    for path in paths:
        try:
            record = json.loads(path.read_text())
            validate_results(record)
        except (OSError, json.JSONDecodeError, ValueError) as err:
            raise UsageError(f"{path}: not a valid results record ({str(err).splitlines()[0]})") from None
        task = get_task(record["task"]["name"])
        prefix = "pass@1" if task.card.answer_kind == "code" else "accuracy"
        rows.append(Row(path, record, f"{prefix}_{task.primary_variant}"))
    return rows


def _defaults(method: str) -> dict[str, Any]:
    from latentbench.config import config_dict
    from latentbench.methods import method_class

    try:
        return config_dict(method_class(method).config_class())
    except Exception:  # a method no longer registered: show its config as it is
        return {}


def _fmt_interval(row: Row) -> str:
    ci = row.interval
    return f"{row.accuracy:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{row.accuracy:.3f}"


def _per_question(row: Row, value: float | None) -> str:
    n = max(row.record["task"]["n"], 1)
    return "–" if value is None else f"{value / n:,.1f}"


def _row_cells(row: Row, out: Path, defaults: dict[str, Any]) -> list[str]:
    r, cost, metrics = row.record, row.record["cost"], row.record["metrics"]
    wall = cost.get("wall_time_s") or 0.0
    tokens = cost.get("generated_tokens") or 0
    budget = metrics.get("latent_budget_usage")
    latent = f"{metrics.get('latent_steps_mean', 0.0):.1f}" + (f" ({budget:.0%})" if budget is not None else "")
    acceptance = r.get("method_metrics", {}).get("acceptance_rate")
    hardware = r.get("environment", {}).get("hardware") or {}
    device = hardware.get("gpu") or (f"{hardware['cpu']} ×{hardware.get('cpu_cores')}" if hardware.get("cpu")
                                     else r["model"].get("device", "?"))
    link = Path(_relative(row.path, out)).as_posix()
    return [row.label(defaults), r["model"]["id"], _fmt_interval(row), _per_question(row, tokens),
            _per_question(row, cost.get("forward_passes")), latent,
            "–" if acceptance is None else f"{acceptance:.3f}", _per_question(row, wall),
            f"{tokens / wall:.1f}" if wall else "–", device, _sandbox_cell(r.get("sandbox")),
            (r["task"].get("data_sha256") or "–")[:12], f"[{row.path.name}]({link})"]


def _sandbox_cell(sandbox: str | None) -> str:
    """Rows scored without bubblewrap (``--unsafe-no-sandbox``) are marked as such."""
    return "–" if sandbox is None else ("**rlimits: unsandboxed**" if sandbox == "rlimits" else sandbox)


HEADER = ["method", "model", "accuracy [95% CI]", "output tokens / q", "forwards / q", "latent steps / q (budget use)",
          "acceptance", "wall s / q", "tokens / s", "hardware", "sandbox", "data sha256", "results"]


def _relative(path: Path, out: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), out.resolve())


def _table(rows: list[Row], out: Path) -> list[str]:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        lines.append("| " + " | ".join(_row_cells(row, out, _defaults(row.record["method"]["name"]))) + " |")
    return lines


def _controls(rows: list[Row], group: list[Row]) -> list[str]:
    """Each latent row with its controls and the cot row of its model, on the same questions."""
    lines: list[str] = []
    for row in group:
        if row.record["method"]["name"] not in LATENT or row.control != "off":
            continue
        defaults = _defaults(row.record["method"]["name"])
        found = {r.control: r for r in rows if r.outcome_key() == row.outcome_key()}
        cot = [r for r in group if r.record["method"]["name"] == "cot" and r.record["model"]["id"] == row.record["model"]["id"]]
        lines.append(f"- **{row.label(defaults)}**: {_fmt_interval(row)}")
        for control in ("noise", "none"):
            hit = found.get(control)
            lines.append(f"  - control={control}: {_fmt_interval(hit) if hit else 'not run'}")
        lines.append(f"  - cot, same model: {_fmt_interval(cot[0]) if cot else 'not run'}")
    return lines


def render(paths: list[Path], out: Path) -> list[Path]:
    """Write OUT/<task>.md, OUT/<task>.png and OUT/README.md (the index); returns the files written."""
    rows = load_rows(sorted(paths))
    if not rows:
        raise UsageError("no results records given (expected RESULTS.json files, e.g. leaderboards/results/*.json)")
    out.mkdir(parents=True, exist_ok=True)
    written, index = [], ["# Leaderboards", "",
                          "Rendered by `latentbench leaderboard` from the results records in `results/`; do not edit by hand.",
                          "Rows are ranked only against rows on the same questions; `--limit` runs are checks on the "
                          "first N questions of a split, not full-split numbers.", "",
                          "| task | question sets | rows | best (accuracy) |", "|---|---|---|---|"]
    for task in sorted({r.task for r in rows}):
        task_rows = [r for r in rows if r.task == task]
        page, sets = [f"# {task}", ""], sorted({r.question_set for r in task_rows}, key=lambda s: (s[0], -s[1]))
        for split, n, full in sets:
            group = sorted((r for r in task_rows if r.question_set == (split, n, full)),
                           key=lambda r: (-r.accuracy, r.label(_defaults(r.record["method"]["name"])), r.path.name))
            title = f"{split}, all {n} questions" if full else f"{split}, first {n} questions (a --limit check)"
            page += [f"## {title}", "", f"Accuracy is `{group[0].metric}`, 95% bootstrap interval over questions.", ""]
            page += _table(group, out) + [""]
            controls = _controls(task_rows, group)
            if controls:
                page += ["### Latent rows, their controls and the text baseline", "", *controls, ""]
            for row in group:
                if row.record.get("command"):
                    page.append(f"- `{row.path.name}`: `{' '.join(row.record['command'])}`")
            page.append("")
        plot = _plot(task, task_rows, out / f"{task}.png")
        page += [f"![accuracy against cost]({plot.name})", ""]
        (out / f"{task}.md").write_text("\n".join(page).rstrip() + "\n")
        written += [out / f"{task}.md", plot]
        best = max(task_rows, key=lambda r: r.accuracy)
        index.append(f"| [{task}]({task}.md) | {len(sets)} | {len(task_rows)} | "
                     f"{best.label(_defaults(best.record['method']['name']))}: {best.accuracy:.3f} |")
    (out / "README.md").write_text("\n".join(index) + "\n")
    return [*written, out / "README.md"]


def _plot(task: str, rows: list[Row], path: Path) -> Path:
    """Accuracy (with its interval) against output tokens and against wall time per question."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for ax, key, xlabel in ((axes[0], "generated_tokens", "output tokens per question"),
                            (axes[1], "wall_time_s", "wall time per question (s)")):
        for row in sorted(rows, key=lambda r: r.path.name):
            n = max(row.record["task"]["n"], 1)
            x = (row.record["cost"].get(key) or 0.0) / n
            ci = row.interval or [row.accuracy, row.accuracy]
            ax.errorbar([x], [row.accuracy], yerr=[[max(row.accuracy - ci[0], 0)], [max(ci[1] - row.accuracy, 0)]], fmt="o", capsize=3,
                        label=f"{row.label(_defaults(row.record['method']['name']))} (n={n})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(rows[0].metric)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", fontsize=7, ncol=2, frameon=False)
    fig.suptitle(task)
    fig.tight_layout(rect=(0, 0.08 + 0.035 * ((len(rows) + 1) // 2), 1, 1))
    fig.savefig(path, metadata={"Software": None})  # no version stamp: same records, same bytes
    plt.close(fig)
    return path
