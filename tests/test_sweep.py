"""Sweeps end to end: a Hydra grid, an Optuna search that resumes, failing jobs, the report."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from audiodiag import sweep_report
from audiodiag.paths import CONF_DIR, REPO_ROOT

# A couple of seconds per job: 2 steps of 4 clips of 0.5 s, 4 validation and test mixtures.
TINY = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "data.train_mixtures_per_epoch=8",
    "data.val_mixtures=4",
    "data.test_mixtures=4",
    "data.segment_seconds=0.5",
    "data.batch_size=4",
    "data.num_workers=0",
    "noise=white",
    "model.context=2",
    "trainer.max_time=null",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "test_pesq_stoi=false",
    "callbacks=minimal",
]


def _multirun(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "AUDIODIAG_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "audiodiag.train", "-m", *args, *TINY],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def _report(sweep_dir: Path, capsys, *extra: str) -> str:
    capsys.readouterr()
    assert sweep_report.main([str(sweep_dir), *extra]) == 0
    return capsys.readouterr().out


def _table_rows(report: str) -> list[list[str]]:
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[1:]]


def test_grid_runs_every_job_in_its_own_dir_and_reports_all(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    sweep = tmp_path / "grid"
    result = _multirun(
        ["layer=elementwise,sparse", "model.depth=1,2", f"hydra.sweep.dir={sweep}"], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (sweep / "multirun.yaml").is_file()
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1", "2", "3"]
    seen = set()
    for job in jobs:
        metrics = _metrics(sweep / job)
        assert metrics["status"] == "ok" and metrics["global_step"] == 2, metrics
        overrides = (sweep / job / ".hydra" / "overrides.yaml").read_text()
        layer = "sparse" if "layer=sparse" in overrides else "elementwise"
        depth = 2 if "model.depth=2" in overrides else 1
        seen.add((layer, depth))
        assert metrics["layer"] == layer
        # TensorBoard on the sweep dir: every job is a run with its own HParams session.
        events = EventAccumulator(str(sweep / job / "tensorboard"))
        events.Reload()
        content = events.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/session_start_info"]
        ).session_start_info
        assert start.hparams["layer.name"].string_value == layer
        assert start.hparams["model.depth"].number_value == depth
        assert "hp/val_si_sdri" in events.Tags()["scalars"]
    assert seen == {("elementwise", 1), ("elementwise", 2), ("sparse", 1), ("sparse", 2)}
    # Deeper nets have more parameters: the grid really varied the model.
    assert len({_metrics(sweep / job)["param_count"] for job in jobs}) == 2

    csv_path = tmp_path / "grid.csv"
    report = _report(sweep, capsys, "--csv", str(csv_path))
    assert "4 jobs" in report and "(4 ok)" in report and "Shared overrides:" in report
    rows = _table_rows(report)
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]
    values = [float(row[3]) for row in rows]
    assert values == sorted(values, reverse=True)  # monitor_mode=max: best first
    for row in rows:
        assert row[2].startswith("layer=") and "model.depth=" in row[2]
        float(row[4])  # test SI-SDRi is a number
        assert int(row[5].replace(",", "")) > 0 and float(row[6]) > 0 and row[7] == "ok"
    with csv_path.open() as handle:
        records = list(csv.DictReader(handle))
    assert len(records) == 4 and {r["layer"] for r in records} == {"elementwise", "sparse"}
    assert all(float(r["val/si_sdri"]) == pytest.approx(float(r["monitor_value"])) for r in records)


def test_failing_job_does_not_stop_the_other_jobs(tmp_path, capsys):
    # The bad value comes first: the basic launcher must still run the job after it.
    sweep = tmp_path / "fail"
    result = _multirun(["model.depth=-1,1", f"hydra.sweep.dir={sweep}"], tmp_path)
    # Hydra reports the failure (exit 1) only after every job of the sweep has run.
    assert result.returncode == 1
    assert "depth=-1" in result.stderr
    assert _metrics(sweep / "0")["status"] == "failed"
    assert _metrics(sweep / "1")["status"] == "ok"
    # A job that died without writing metrics.json (e.g. killed) is listed too.
    (sweep / "2" / ".hydra").mkdir(parents=True)
    (sweep / "2" / ".hydra" / "overrides.yaml").write_text("- model.depth=3\n")
    rows = _table_rows(_report(sweep, capsys))
    assert [(row[1], row[7]) for row in rows] == [("1", "ok"), ("0", "failed"), ("2", "unknown")]
    assert rows[0][0] == "1" and float(rows[0][3]) == pytest.approx(
        _metrics(sweep / "1")["val/si_sdri"], abs=0.01
    )
    assert "model.depth=-1" in rows[1][2] and "depth=-1 must be an integer >= 1" in rows[1][8]
    assert rows[1][3] == "—" and "no metrics.json" in rows[2][8]


@pytest.mark.slow  # ~30 s on 2 busy cores: each joblib worker imports torch and Lightning anew
def test_joblib_launcher_runs_jobs_in_parallel_despite_a_failure(tmp_path):
    sweep = tmp_path / "joblib"
    result = _multirun(
        [
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "model.depth=-1,1",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
    )
    assert result.returncode == 1 and "depth=-1" in result.stderr
    assert _metrics(sweep / "0")["status"] == "failed"
    assert _metrics(sweep / "1")["status"] == "ok"
    jobs = sweep_report.collect_jobs(sweep)
    assert [(j.job, j.status) for j in jobs] == [("1", "ok"), ("0", "failed")]


def test_optuna_search_records_failed_trials_and_resumes(tmp_path, capsys):
    import optuna

    study_dir = tmp_path / "study"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    search = [
        "hparams_search=optuna",
        # depth -1 is invalid: those trials must fail without ending the search.
        "model.depth=choice(1,-1)",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=test",
    ]
    first = _multirun(
        [*search, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={study_dir}/first"], tmp_path
    )
    assert first.returncode == 0, first.stderr[-3000:]
    study = optuna.load_study(study_name="test", storage=storage)
    states = [t.state for t in study.trials]
    assert len(states) == 3
    for trial in study.trials:
        failed = trial.state == optuna.trial.TrialState.FAIL
        assert failed == (trial.params["model.depth"] == -1), trial
        assert set(trial.params) == {
            "optimizer.lr",
            "model.depth",
            "model.gain_floor_db",
            "layer",
        }  # model.context was fixed on the command line, so it left the search space
        assert 3e-4 <= trial.params["optimizer.lr"] <= 3e-2
    # Seeded TPE: this seed draws one invalid depth among the first 3 trials.
    assert states.count(optuna.trial.TrialState.FAIL) == 1
    assert (study_dir / "first" / "optimization_results.yaml").is_file()

    # Same storage and study name: the search continues (trial numbers go on from 3).
    second = _multirun(
        [*search, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={study_dir}/second"], tmp_path
    )
    assert second.returncode == 0, second.stderr[-3000:]
    study = optuna.load_study(study_name="test", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]

    # One report over the study folder: all 4 trials, the failed one with its error line.
    report = _report(study_dir, capsys)
    rows = _table_rows(report)
    assert len(rows) == 4
    by_status = {row[7] for row in rows}
    assert by_status == {"ok", "failed"}
    failed = [row for row in rows if row[7] == "failed"]
    assert len(failed) == sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials)
    assert all("depth=-1 must be" in row[8] and row[1].startswith("first/") for row in failed)
    ok = [row for row in rows if row[7] == "ok"]
    assert all(row[0].isdigit() and float(row[3]) == float(row[3]) for row in ok)
    assert {row[1] for row in rows} == {"first/0", "first/1", "first/2", "second/0"}
    assert "Optuna best" in report


def _compose(*overrides: str):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_optuna_search_config_composes():
    cfg = _compose("hparams_search=optuna", "seed=7")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.direction == "maximize" and cfg.monitor_mode == "max"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.sampler.seed == 7  # follows the run seed
    assert sweeper.max_failure_rate == 1.0
    assert set(sweeper.params) == {
        "optimizer.lr",
        "model.depth",
        "model.context",
        "model.gain_floor_db",
        "layer",
    }
    assert "/optuna/gainnet/" in cfg.hydra.sweep.dir


@pytest.mark.parametrize("launcher", ["submitit_slurm", "slurm"])
def test_slurm_launcher_config_composes_into_an_sbatch_script(tmp_path, monkeypatch, launcher):
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    cfg = _compose(f"hydra/launcher={launcher}", "hydra.launcher.partition=gpu", "trainer=gpu")
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params.pop("_target_").endswith("submitit_launcher.SlurmLauncher")
    assert params.pop("submitit_folder").endswith("/.submitit/%j")
    # submitit refuses to build a SLURM executor without srun: give it a stand-in (never run).
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    executor = submitit.AutoExecutor(
        folder=tmp_path / "submitit",
        cluster="slurm",
        slurm_max_num_timeout=params.pop("max_num_timeout"),
    )
    # The same key mapping as the plugin's launch(): unknown keys would raise here.
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -m audiodiag.train", "0")
    assert "#SBATCH --partition=gpu" in script
    if launcher == "slurm":
        for line in ("--gpus-per-node=1", "--cpus-per-task=8", "--mem=32GB", "--time=180"):
            assert f"#SBATCH {line}" in script, line
        assert "#SBATCH --job-name=audiodiag_train" in script


def test_joblib_launcher_config_composes():
    cfg = _compose("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2


def _fake_job(root: Path, name: str, overrides: list[str], metrics: dict | None, mode="max"):
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (job / ".hydra" / "config.yaml").write_text(f"monitor: val/loss\nmonitor_mode: {mode}\n")
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps({"monitor": "val/loss", **metrics}))


@pytest.mark.parametrize("mode", ["min", "max"])
def test_report_sorts_by_monitor_mode_and_never_drops_a_job(tmp_path, capsys, mode):
    for i, (loss, status) in enumerate([(0.5, "ok"), (0.2, "ok"), (0.9, "ok"), (None, "failed")]):
        metrics = {"status": status, "val/loss": loss, "param_count": 10 * (i + 1)}
        if status == "failed":
            metrics["error"] = "RuntimeError: boom | with a pipe"
        _fake_job(tmp_path, str(i), [f"optimizer.lr={i}", "seed=1"], metrics, mode)
    _fake_job(tmp_path, "10", ["optimizer.lr=10", "seed=1"], None, mode)  # killed: no metrics
    report = _report(tmp_path, capsys)
    rows = _table_rows(report)
    expected = ["1", "0", "2"] if mode == "min" else ["2", "0", "1"]
    assert [row[1] for row in rows] == [*expected, "3", "10"]
    assert "`val/loss` (" + mode + ")" in report and "Shared overrides: `seed=1`" in report
    assert rows[0][3] == ("0.2000" if mode == "min" else "0.9000")  # the monitor's own column
    assert rows[3][-2] == "failed" and rows[3][-1] == "RuntimeError: boom \\| with a pipe"
    assert rows[4][-2] == "unknown"


def test_report_on_a_folder_without_jobs_says_so(tmp_path, capsys):
    assert sweep_report.main([str(tmp_path)]) == 2
    assert "no job directories" in capsys.readouterr().err
    assert sweep_report.main([str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
