"""One table for a whole Hydra sweep: ``python -m audiodiag.sweep_report SWEEP_DIR [--csv PATH]``.

Reads every job directory under ``SWEEP_DIR`` (any folder holding ``.hydra/overrides.yaml`` or
``metrics.json``, found recursively, so a folder of several sweeps or Optuna sessions works too)
and prints a Markdown table sorted by the monitored metric (``monitor``/``monitor_mode`` from the
job's config, ``val/si_sdri``/max by default): the overrides that differ between jobs, validation
and test SI-SDR improvement, parameter count, train time and status. Jobs that failed are listed
after the finished ones with their error line; a job directory without ``metrics.json`` (killed,
crashed before writing it, or still running) is listed with status ``unknown``; a job the sweep
launched (its ``multirun.yaml``) whose folder is gone is listed with status ``missing``. A
metrics file that cannot be read (not UTF-8, not JSON) is reported on the job's row. Nothing is
dropped.

``--csv PATH`` also writes every job as a CSV row (all overrides, one column per varying override,
the full-precision numbers), for pandas or a spreadsheet; an existing file is replaced only with
``--overwrite``, and the file is renamed into place when complete.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from audiodiag.atomic import OutputError, atomic_write, check_output
from audiodiag.cli import run_entry

__all__ = ["JobResult", "collect_jobs", "find_job_dirs", "main", "markdown_report", "write_csv"]

#: Statuses written by ``audiodiag.train`` into metrics.json, plus ``unknown`` for no file.
FINISHED = "ok"
UNKNOWN = "unknown"
MISSING = "missing"
MISSING_ERROR = "job folder missing: deleted or moved after the sweep launched it"
NO_METRICS_ERROR = (
    "no metrics.json: the job was killed, crashed before writing it, or is still running"
)
# Folders that are never job directories themselves and need not be searched.
_SKIP_DIRS = {".hydra", ".submitit", "checkpoints", "tensorboard", "csv", "__pycache__"}
_ERROR_LINE = re.compile(r"\b\w*(Error|Exception|Interrupt)\b")


class SweepReportError(ValueError):
    """The sweep directory cannot be read; the message names the path and what was expected."""


@dataclass
class JobResult:
    """What one sweep job left behind: its overrides, status and final metrics."""

    job: str
    path: Path
    status: str
    overrides: list[str]
    monitor: str
    monitor_mode: str
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def score(self) -> float | None:
        """The monitored metric, or None when the job has no finite value for it."""
        return _number(self.metrics.get(self.monitor))

    def value(self, key: str) -> float | None:
        """A finite number from metrics.json, or None."""
        return _number(self.metrics.get(key))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _natural_key(path: Path) -> list[Any]:
    # Job folders are numbered (0, 1, ..., 10): sort 2 before 10.
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in path.as_posix().split("/")
    ]


def _is_job_dir(path: Path) -> bool:
    return (path / ".hydra" / "overrides.yaml").is_file() or (path / "metrics.json").is_file()


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Every job directory under ``sweep_dir`` (or ``sweep_dir`` itself for a single run)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise SweepReportError(f"{sweep_dir}: no such directory; give a Hydra sweep directory")
    if _is_job_dir(sweep_dir):
        return [sweep_dir]
    found: list[Path] = []
    stack = [sweep_dir]
    while stack:
        folder = stack.pop()
        for child in folder.iterdir():
            if not child.is_dir() or child.name in _SKIP_DIRS:
                continue
            if _is_job_dir(child):
                found.append(child)
            else:
                stack.append(child)
    return sorted(found, key=lambda p: _natural_key(p.relative_to(sweep_dir)))


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: not UTF-8
        return None


def _job_config(job_dir: Path) -> dict[str, Any]:
    # resolved_config.yaml is written by train() before anything can fail late; .hydra/config.yaml
    # exists even for jobs that died first (unresolved, but monitor keys are plain values).
    for candidate in (job_dir / "resolved_config.yaml", job_dir / ".hydra" / "config.yaml"):
        loaded = _read_yaml(candidate)
        if isinstance(loaded, dict):
            return loaded
    return {}


def _last_error_line(job_dir: Path) -> str | None:
    """The last line that names an error in the job's log files, if any."""
    last: str | None = None
    for log_file in sorted(job_dir.glob("*.log")):
        try:
            lines = log_file.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if _ERROR_LINE.search(line):
                last = line.strip()
    return last


def load_job(job_dir: Path, sweep_dir: Path) -> JobResult:
    """Read one job directory; never raises on a broken or missing metrics file."""
    config = _job_config(job_dir)
    monitor = str(config.get("monitor") or "val/si_sdri")
    monitor_mode = str(config.get("monitor_mode") or "max")
    overrides_yaml = _read_yaml(job_dir / ".hydra" / "overrides.yaml")
    overrides = [str(o) for o in overrides_yaml] if isinstance(overrides_yaml, list) else []
    name = job_dir.relative_to(sweep_dir).as_posix() if job_dir != sweep_dir else job_dir.name

    metrics_path = job_dir / "metrics.json"
    metrics: dict[str, Any] = {}
    error: str | None = None
    if metrics_path.is_file():
        try:
            loaded = json.loads(metrics_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8 at all
            loaded = None
            error = f"metrics.json unreadable: {type(exc).__name__}: {exc}"
        if isinstance(loaded, dict):
            metrics = loaded
        elif error is None:
            error = "metrics.json does not hold a JSON object"
    status = str(metrics.get("status", UNKNOWN)) if metrics else UNKNOWN
    if status != FINISHED:
        error = metrics.get("error") or error
        if error is None and not metrics_path.is_file():
            logged = _last_error_line(job_dir)
            error = f"{NO_METRICS_ERROR} (log: {logged})" if logged else NO_METRICS_ERROR
    if not overrides and isinstance(metrics.get("overrides"), list):
        overrides = [str(o) for o in metrics["overrides"]]
    return JobResult(
        job=name,
        path=job_dir,
        status=status,
        overrides=overrides,
        monitor=str(metrics.get("monitor") or monitor),
        monitor_mode=monitor_mode,
        metrics=metrics,
        error=None if error is None else str(error),
    )


def collect_jobs(sweep_dir: Path) -> list[JobResult]:
    """All jobs of a sweep, best first by the monitored metric; unfinished and failed jobs last.

    Raises :class:`SweepReportError` when the folder holds no job directory at all.
    """
    sweep_dir = Path(sweep_dir)
    job_dirs = find_job_dirs(sweep_dir)
    if not job_dirs:
        raise SweepReportError(
            f"{sweep_dir}: no job directories (folders with .hydra/overrides.yaml or metrics.json) "
            "found; give the folder Hydra printed as the sweep output dir"
        )
    jobs = [load_job(path, sweep_dir) for path in job_dirs]
    jobs += missing_jobs(sweep_dir, {job.job for job in jobs})
    return sort_jobs(jobs)


def _launched_jobs(multirun: dict[str, Any]) -> list[list[str]] | None:
    """Each job's overrides as Hydra's basic sweeper expands the sweep's ``multirun.yaml``
    (job number = position); None for other sweepers (Optuna decides as it goes)."""
    hydra_cfg = multirun.get("hydra") or {}
    sweeper = hydra_cfg.get("sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    task = [str(o) for o in (hydra_cfg.get("overrides") or {}).get("task") or []]
    try:
        overrides = OverridesParser.create().parse_overrides([*params, *task])
        batches = BasicSweeper.split_arguments(overrides, None)
    except Exception:  # noqa: BLE001 - an odd override: fall back to gaps in the numbering
        return None
    return [job for batch in batches for job in batch]


def missing_jobs(sweep_dir: Path, found: set[str]) -> list[JobResult]:
    """A ``missing`` row for every job a sweep under ``sweep_dir`` launched whose folder is gone.

    Only folders holding Hydra's ``multirun.yaml`` are sweeps; their jobs are the basic sweeper's
    expansion, or (other sweepers) the numbers below the highest job folder present.
    """
    missing: list[JobResult] = []
    for multirun_file in sorted(Path(sweep_dir).rglob("multirun.yaml")):
        root = multirun_file.parent
        loaded = _read_yaml(multirun_file)
        loaded = loaded if isinstance(loaded, dict) else {}
        launched = _launched_jobs(loaded)
        monitor = str(loaded.get("monitor") or "val/si_sdri")
        mode = str(loaded.get("monitor_mode") or "max")
        numbers = [int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
        if launched is None:
            launched = [[] for _ in range(max(numbers, default=-1) + 1)]
        for number, overrides in enumerate(launched):
            folder = root / str(number)
            name = folder.relative_to(sweep_dir).as_posix() if root != sweep_dir else str(number)
            if name in found or folder.is_dir():
                continue
            job = JobResult(name, folder, MISSING, overrides, monitor, mode, error=MISSING_ERROR)
            missing.append(job)
    return missing


def sort_jobs(jobs: Sequence[JobResult]) -> list[JobResult]:
    """Finished jobs with a score by score (per each job's monitor_mode), then the rest in order."""
    scored = [j for j in jobs if j.status == FINISHED and j.score is not None]
    rest = [j for j in jobs if j not in scored]

    def key(job: JobResult) -> float:
        score = job.score if job.score is not None else math.nan
        return -score if job.monitor_mode == "max" else score

    # Sorting is stable: ties keep the job order. min mode sorts ascending.
    scored.sort(key=key)
    finished_unscored = [j for j in rest if j.status == FINISHED]
    not_finished = [j for j in rest if j.status != FINISHED]
    return scored + finished_unscored + not_finished


def _split_override(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key, value


def split_overrides(jobs: Sequence[JobResult]) -> tuple[list[str], list[str]]:
    """(overrides shared by every job, keys whose value differs between jobs), in first-seen order."""
    keys: list[str] = []
    values: dict[str, set[str | None]] = {}
    per_job = [dict(_split_override(o) for o in job.overrides) for job in jobs]
    for mapping in per_job:
        for key in mapping:
            if key not in values:
                keys.append(key)
                values[key] = set()
    for mapping in per_job:
        for key in keys:
            values[key].add(mapping.get(key))
    common = [f"{k}={next(iter(values[k]))}" for k in keys if len(values[k]) == 1]
    varying = [k for k in keys if len(values[k]) > 1]
    return common, varying


def _short_value(value: str) -> str:
    # Optuna proposes values like 0.00375619614449984: 4 significant digits read better.
    if re.fullmatch(r"-?\d+\.\d{5,}(e-?\d+)?", value):
        return f"{float(value):.4g}"
    return value


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _fmt_int(value: float | None) -> str:
    return "—" if value is None else f"{int(value):,}"


def markdown_report(jobs: Sequence[JobResult], sweep_dir: Path | str | None = None) -> str:
    """The sweep as Markdown: a summary line, the shared overrides, and one row per job."""
    if not jobs:
        return "No jobs.\n"
    monitor = jobs[0].monitor
    mode = jobs[0].monitor_mode
    common, varying = split_overrides(jobs)
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    lines = []
    where = f" in `{sweep_dir}`" if sweep_dir is not None else ""
    lines.append(f"{len(jobs)} jobs{where} ({summary}), sorted by `{monitor}` ({mode}).")
    if common:
        lines.append("")
        lines.append("Shared overrides: " + " ".join(f"`{o}`" for o in common))
    references = {round(v, 2) for j in jobs if (v := j.value("test/reference_si_sdri")) is not None}
    show_reference = len(references) > 1
    if len(references) == 1:
        lines.append("")
        lines.append(
            f"Wiener reference on the same test mixtures: {references.pop():.2f} dB SI-SDR "
            "improvement."
        )
    columns = ["#", "job", "overrides"]
    extra_monitor = monitor not in ("val/si_sdri", "test/si_sdri")
    if extra_monitor:
        columns.append(f"{monitor}")
    columns += ["val SI-SDRi (dB)", "test SI-SDRi (dB)"]
    if show_reference:
        columns.append("test Wiener SI-SDRi (dB)")
    columns += ["params", "train time (s)", "status", "error"]
    lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    rank = 0
    for job in jobs:
        mapping = dict(_split_override(o) for o in job.overrides)
        shown = " ".join(f"{k}={_short_value(mapping[k])}" for k in varying if k in mapping)
        if job.status == FINISHED and job.score is not None:
            rank += 1
            position = str(rank)
        else:
            position = "—"
        row = [position, job.job, shown or "(shared only)"]
        if extra_monitor:
            row.append(_fmt(job.score, 4))
        row += [_fmt(job.value("val/si_sdri")), _fmt(job.value("test/si_sdri"))]
        if show_reference:
            row.append(_fmt(job.value("test/reference_si_sdri")))
        row += [
            _fmt_int(job.value("param_count")),
            _fmt(job.value("train_time_s"), 1),
            job.status,
            job.error or "",
        ]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


_CSV_METRICS = (
    "val/si_sdri",
    "test/si_sdri",
    "test/si_sdr",
    "test/reference_si_sdri",
    "param_count",
    "train_time_s",
    "wall_time_s",
    "epochs",
    "global_step",
)


def write_csv(jobs: Sequence[JobResult], path: Path) -> None:
    """Every job as one CSV row: varying overrides as columns, full-precision metrics."""
    _, varying = split_overrides(jobs)
    fixed = ["rank", "job", "status", "monitor", "monitor_value", *_CSV_METRICS, "error"]
    override_columns = [k if k not in fixed else f"override:{k}" for k in varying]
    extra = sorted(
        {
            key
            for job in jobs
            for key, value in job.metrics.items()
            if key not in fixed and "/" in key and _number(value) is not None
        }
    )
    header = [*fixed[:5], *override_columns, *_CSV_METRICS, *extra, "error", "overrides"]
    with atomic_write(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        rank = 0
        for job in jobs:
            mapping = dict(_split_override(o) for o in job.overrides)
            scored = job.status == FINISHED and job.score is not None
            rank += scored
            row: list[Any] = [rank if scored else "", job.job, job.status, job.monitor]
            row.append("" if job.score is None else job.score)
            row += [mapping.get(k, "") for k in varying]
            for key in (*_CSV_METRICS, *extra):
                value = job.metrics.get(key)
                row.append("" if _number(value) is None else value)
            row += [job.error or "", " ".join(job.overrides)]
            writer.writerow(row)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the sweep table; ``--csv PATH`` also writes it as CSV. Returns the exit status
    (0 done, 2 bad folder or output, 1 unexpected error; ``--debug`` shows its traceback)."""
    return run_entry(_main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audiodiag.sweep_report",
        description="Summarise a Hydra multirun (grid or Optuna) of audiodiag.train as one table.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the sweep directory Hydra printed")
    parser.add_argument("--csv", type=Path, default=None, help="also write every job to this CSV")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --csv file")
    args = parser.parse_args(argv)
    try:
        if args.csv is not None:  # checked first: a bad path costs nothing
            check_output(args.csv, "--csv", overwrite=args.overwrite, overwrite_hint="--overwrite")
        jobs = collect_jobs(args.sweep_dir)
    except (SweepReportError, OutputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = markdown_report(jobs, args.sweep_dir)
    optimisations = sorted(Path(args.sweep_dir).rglob("optimization_results.yaml"))
    for results in optimisations:
        loaded = _read_yaml(results)
        if isinstance(loaded, dict) and "best_value" in loaded:
            text += (
                f"\nOptuna best ({results.parent}): value {loaded['best_value']:.4f}, "
                f"params {loaded.get('best_params')}\n"
            )
    print(text, end="")
    if args.csv is not None:
        write_csv(jobs, args.csv)
        print(f"\nwrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
