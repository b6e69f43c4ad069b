"""The benchmark scripts' own logic (their timings are never asserted)."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest
import torch
from script_helpers import load_script

from audiodiag.model import GainNet

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str):  # type: ignore[no-untyped-def]
    return load_script(name)


@pytest.mark.parametrize("train", [True, False])
def test_profile_split_covers_the_step_without_overlap(train: bool, one_thread: None) -> None:
    profile_model = _load("profile_model")
    net = GainNet(causal=False, depth=1, context=3)
    noisy = torch.randn(2, 4000) * 0.1
    clean = torch.randn(2, 4000) * 0.1 if train else None
    parts = profile_model.split_step(net, noisy, clean)
    names = ("transforms", "loss", "features", "network")
    assert all(parts[name] >= 0 for name in names)
    assert (parts["loss"] > 0) == train
    # The parts are disjoint intervals of the step: together at most the whole.
    assert sum(parts[name] for name in names) <= parts["total"] + 1e-9
    assert sum(parts[name] for name in names) >= 0.5 * parts["total"]
    if train:
        assert all(p.grad is not None for p in net.parameters())


def test_loss_cost_times_every_loss_and_prints_ratios(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    loss_cost = _load("loss_cost")
    argv = ["loss_cost.py", "--batch", "1", "--seconds", "0.25", "--rounds", "1", "--threads", "1"]
    monkeypatch.setattr("sys.argv", argv)
    loss_cost.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| loss.")]
    assert len(rows) == len(loss_cost.LOSSES) - 1
    assert all(row.rstrip(" |").endswith("x") for row in rows)


def test_oracle_gains_pass_speech_bins_and_floor_noise_bins() -> None:
    oracle_gap = _load("oracle_gap")
    speech = torch.zeros(10, 3, dtype=torch.complex64)
    noise = torch.zeros(10, 3, dtype=torch.complex64)
    speech[:5] = 1.0
    noise[5:] = 1.0
    gains = oracle_gap.oracle_gains(speech, noise, floor=0.1)
    assert torch.allclose(gains[:5], torch.ones(5, 3))
    assert torch.allclose(gains[5:], torch.full((5, 3), 0.1))


def test_oracle_gap_scores_the_oracle_above_an_untrained_net(one_thread: None) -> None:
    oracle_gap = _load("oracle_gap")
    net = GainNet(causal=False, depth=1, context=3).eval()
    time = torch.arange(16000) / 16000
    clean = 0.3 * torch.sin(2 * torch.pi * 440 * time) * (time > 0.3)
    noisy = clean + 0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(0))
    scores = oracle_gap.score_clip(net, noisy, clean)
    assert scores["oracle"] > 5.0 > scores["model"]
    assert scores["ideal"].shape == scores["gains"].shape == scores["spec"].shape


def test_stall_timer_splits_wait_and_step(monkeypatch: pytest.MonkeyPatch) -> None:
    data_stall = _load("data_stall")
    clock = iter([0.0, 1.0, 1.5, 4.0, 4.5, 7.0, 8.0, 9.0])
    monkeypatch.setattr(data_stall.time, "perf_counter", lambda: next(clock))
    timer = data_stall.StallTimer(warmup=1)
    # Step 0 is warm-up: neither its wait nor its step counts. Step 3 starts a new epoch.
    for batch_idx in (0, 1, 2, 0):
        timer.on_train_batch_start(None, None, None, batch_idx)
        timer.on_train_batch_end(None, None, None, None, batch_idx)
    summary = timer.summary()
    # Waits 1.5-1.0, 4.5-4.0, 8.0-7.0 = 2.0 s; steps 4.0-1.5, 7.0-4.5, 9.0-8.0 = 6.0 s.
    assert summary["timed_steps"] == 3
    assert summary["wait_s_total"] == pytest.approx(2.0)
    assert summary["step_s_total"] == pytest.approx(6.0)
    assert summary["stall_fraction"] == pytest.approx(0.25)
    # The epoch start's 1.0 s wait apart: 1.0 s of waits in 7.0 s without it.
    assert summary["epoch_starts"] == 1
    assert summary["epoch_start_wait_s_total"] == pytest.approx(1.0)
    assert summary["steady_stall_fraction"] == pytest.approx(1.0 / 7.0)


def test_data_stall_reports_steps_per_second_against_the_ceiling(tmp_path: Path) -> None:
    data_stall = _load("data_stall")
    out = tmp_path / "stall.json"
    summary = data_stall.main(
        ["data.num_workers=0", "--steps", "3", "--warmup", "1", "--ceiling", "--json", str(out)]
    )
    assert summary["timed_steps"] == 3 and 0.0 <= summary["stall_fraction"] < 1.0
    assert summary["steps_per_s"] > 0 and summary["ceiling_steps_per_s"] > 0
    assert json.loads(out.read_text())["ceiling_steps_per_s"] == summary["ceiling_steps_per_s"]


def _fake_ablation_run(commands: list[list[str]]):  # type: ignore[no-untyped-def]
    """Stands in for ablation.run: records each command and writes the report it asks for."""

    def run(command: list[str], log: Path) -> None:
        commands.append(command)
        reports = [Path(arg[len("json=") :]) for arg in command if arg.startswith("json=")]
        for report in reports:
            groups = {"all": {"kind": "all", "si_sdri": {"model": 1.5}, "n": 4}}
            report.write_text(json.dumps({"summary": {"groups": groups}}))

    return run


def _ablation_args(tmp_path: Path, **changes: object) -> argparse.Namespace:
    defaults = {"epochs": 1, "mixtures_per_epoch": 16, "extra": [], "train_only": False}
    defaults["score_only"] = False
    return argparse.Namespace(out=tmp_path, **{**defaults, **changes})


def _trained_row(tmp_path: Path, overrides: list[str]) -> Path:
    """A finished row as another machine left it: its recorded checkpoint path is not here."""
    train = tmp_path / "rank0" / "train"
    (train / "checkpoints").mkdir(parents=True)
    (train / "checkpoints" / "best.ckpt").write_bytes(b"")
    metrics = {"status": "ok", "best_checkpoint": "/gpu/rank0/train/checkpoints/best.ckpt"}
    metrics.update(global_step=4800, overrides=["data=folder", *overrides])
    (train / "metrics.json").write_text(json.dumps(metrics))
    return train


def test_ablation_scores_a_row_trained_elsewhere_without_training_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ablation = _load("ablation")
    train = _trained_row(tmp_path, ablation.ROWS["rank0"])
    commands: list[list[str]] = []
    monkeypatch.setattr(ablation, "run", _fake_ablation_run(commands))
    row = ablation.train_and_score("rank0", _ablation_args(tmp_path, score_only=True), tmp_path)
    assert [command[2] for command in commands] == ["audiodiag.evaluate"] * 3
    assert all(f"model={train / 'checkpoints' / 'best.ckpt'}" in c for c in commands)
    assert row["global_step"] == 4800 and row["voices"]["all"]["si_sdri"] == 1.5
    assert (tmp_path / "rank0" / "row.json").exists()


def test_ablation_refuses_a_run_of_another_row_or_without_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ablation = _load("ablation")
    train = _trained_row(tmp_path, ["layer.rank=4"])
    monkeypatch.setattr(ablation, "run", _fake_ablation_run([]))
    with pytest.raises(SystemExit, match="trained without"):
        ablation.train_and_score("rank0", _ablation_args(tmp_path), tmp_path)
    metrics = json.loads((train / "metrics.json").read_text())
    (train / "metrics.json").write_text(
        json.dumps({**metrics, "overrides": ablation.ROWS["rank0"]})
    )
    (train / "checkpoints" / "best.ckpt").unlink()
    with pytest.raises(SystemExit, match="best.ckpt is missing"):
        ablation.train_and_score("rank0", _ablation_args(tmp_path), tmp_path)
    with pytest.raises(SystemExit, match="--score-only: row rank16 has no finished training"):
        ablation.train_and_score("rank16", _ablation_args(tmp_path, score_only=True), tmp_path)


def test_ablation_summary_holds_every_row_scored_into_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two invocations into one folder (side by side, or one after the other) share one table,
    in the order of ROWS, whichever finished last."""
    ablation = _load("ablation")
    corpus = tmp_path / "corpus"
    for split in ("train", "heldout_voices"):
        (corpus / split).mkdir(parents=True)
    out = tmp_path / "out"

    def fake_train_and_score(name: str, args: argparse.Namespace, corpus: Path) -> dict:
        groups = {"all": {"si_sdri": 1.0, "pesq": 1.5, "stoi": 0.9, "n": 4}}
        row = {"name": name, "fixed": groups, "voices": groups, "families": groups}
        (args.out / name).mkdir(parents=True, exist_ok=True)
        (args.out / name / "row.json").write_text(json.dumps(row))
        return row

    monkeypatch.setattr(ablation, "train_and_score", fake_train_and_score)
    for rows in (["rank16", "rank0"], ["rank4"]):
        argv = ["ablation.py", "--out", str(out), "--corpus", str(corpus), "--rows", *rows]
        monkeypatch.setattr("sys.argv", argv)
        ablation.main()
    names = [row["name"] for row in json.loads((out / "ablation.json").read_text())]
    assert names == ["rank0", "rank4", "rank16"]
    table = (out / "ablation.md").read_text()
    assert all(f"| {name} |" in table for name in names)


def test_ablation_train_only_trains_an_unfinished_row_and_scores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ablation = _load("ablation")
    train = tmp_path / "rank0" / "train"
    train.mkdir(parents=True)
    (train / "metrics.json").write_text(json.dumps({"status": "interrupted"}))
    commands: list[list[str]] = []
    monkeypatch.setattr(ablation, "run", _fake_ablation_run(commands))
    args = _ablation_args(tmp_path, epochs=3, extra=["trainer=gpu"], train_only=True)
    assert ablation.train_and_score("rank0", args, tmp_path / "corpus") == {}
    assert len(commands) == 1 and commands[0][2] == "audiodiag.train"
    assert "trainer.max_epochs=3" in commands[0] and commands[0][-1] == "trainer=gpu"


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.sh")))
def test_shell_scripts_parse(script: str) -> None:
    # They run on machines this suite never sees (a GPU lease, a clean venv): parse them here.
    done = subprocess.run(["bash", "-n", str(SCRIPTS / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_ablation_adds_the_other_voice_sets_to_a_scored_row_without_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row scored before make_other_voices.py ran gets (d)-(f) and keeps (a)-(c)."""
    ablation = _load("ablation")
    _trained_row(tmp_path, ablation.ROWS["rank0"])
    commands: list[list[str]] = []
    monkeypatch.setattr(ablation, "run", _fake_ablation_run(commands))
    args = _ablation_args(tmp_path, score_only=True)
    row = ablation.train_and_score("rank0", args, tmp_path)
    assert "other" not in row and len(commands) == 3
    for folder in ablation.EXTRA_EVALUATIONS.values():
        (tmp_path / folder).mkdir()
    row = ablation.train_and_score("rank0", args, tmp_path)
    roots = [arg for command in commands[3:] for arg in command if "speech.root" in arg]
    assert roots == [f"data.speech.root={tmp_path / 'other_voices'}",
                     f"data.speech.root={tmp_path / 'real_voice'}",
                     f"data.speech.root={tmp_path}"]  # fmt: skip
    assert f"noise.folder={tmp_path / 'real_noise'}" in commands[5]  # speech in recorded music
    assert row["other"]["all"]["si_sdri"] == 1.5 and "fixed" in row
    assert ablation.train_and_score("rank0", args, tmp_path) == row and len(commands) == 6
    assert "| (d) other SI-SDRi |" in ablation.markdown([row])


def test_ablation_row_with_a_training_root_trains_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ablation = _load("ablation")
    commands: list[list[str]] = []
    monkeypatch.setattr(ablation, "run", _fake_ablation_run(commands))
    args = _ablation_args(tmp_path, train_only=True)
    for name in ("rank0-bursts-other", "rank0-bursts"):
        ablation.train_and_score(name, args, tmp_path / "corpus")
    roots = [arg for command in commands for arg in command if "speech.root" in arg]
    assert roots == [f"data.speech.root={tmp_path / 'corpus' / 'with_other'}",
                     f"data.speech.root={tmp_path / 'corpus'}"]  # fmt: skip


def test_make_pretrained_card_only_rescores_the_shipped_file_and_keeps_its_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_pretrained = _load("make_pretrained")
    models = tmp_path / "models"
    models.mkdir()
    (models / "offline.pt").write_bytes(b"weights")
    monkeypatch.setattr(make_pretrained, "MODELS_DIR", models)
    monkeypatch.setattr(make_pretrained, "REPO", tmp_path)
    evaluated: list[tuple[str, ...]] = []

    def fake_evaluate(model: Path, out: Path, *overrides: str) -> dict:
        evaluated.append(overrides)
        groups = {"all": {"n": 4, "si_sdri": {"model": 2.0}}}
        return {"rtf": 0.01, "summary": {"groups": groups}}

    monkeypatch.setattr(make_pretrained, "evaluate", fake_evaluate)
    corpus = tmp_path / "corpus"
    (corpus / "other_voices").mkdir(parents=True)
    (corpus / "real_noise").mkdir()
    args = argparse.Namespace(corpus=corpus)
    card = {"sha256": make_pretrained.sha256(models / "offline.pt"), "commit": "abc", "epochs": 9}
    card["rtf_one_thread"] = 0.004  # measured on a quiet machine when the file was made
    entry = make_pretrained.recard("offline", {**card, "other_voices": {"si_sdri": 0.0}}, args)
    assert entry["commit"] == "abc" and entry["epochs"] == 9 and entry["sha256"] == card["sha256"]
    assert entry["rtf_one_thread"] == 0.004 and entry["fixed_test"]["all"]["si_sdri"] == 2.0
    assert entry["other_voices"]["si_sdri"] == 2.0 and "real_voice" not in entry
    assert any(f"data.speech.root={corpus / 'other_voices'}" in o for o in evaluated)
    assert any(f"noise.folder={corpus / 'real_noise'}" in o for o in evaluated)
    assert "real_music" in entry
    with pytest.raises(SystemExit, match="is not the file its card describes"):
        make_pretrained.recard("offline", {**card, "sha256": "0" * 64}, args)


def test_make_pretrained_scores_the_recorded_talkers_no_model_trains_on(tmp_path: Path) -> None:
    make_pretrained = _load("make_pretrained")
    for talker in ("asterisk_en_allison", "asterisk_fr_june"):
        (tmp_path / "real_train" / "train" / talker).mkdir(parents=True)

    def record(talker: str, improvement: float) -> dict:
        si_sdr = {"noisy": 0.0, "model": improvement}
        return {"source_id": f"test/{talker}/x.flac", "noise_type": "white", "snr_db": 0.0,
                "silent": False, "si_sdr": si_sdr}  # fmt: skip

    report = {"records": [record("asterisk_en_allison", 9.0), record("alsa", 2.0),
                          record("asterisk_it_carlo", 4.0), record("asterisk_fr_june", 9.0)]}  # fmt: skip
    unheard = make_pretrained.unheard_talkers(report, tmp_path)
    assert unheard["n"] == 2 and unheard["si_sdri"] == pytest.approx(3.0)
    only_heard = {"records": [record("asterisk_fr_june", 9.0)]}
    with pytest.raises(SystemExit, match="every talker"):
        make_pretrained.unheard_talkers(only_heard, tmp_path)


def test_make_pretrained_cards_say_what_the_experiment_trains_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_pretrained = _load("make_pretrained")
    monkeypatch.setattr(make_pretrained, "REPO", tmp_path)
    experiments = tmp_path / "conf" / "experiment"
    experiments.mkdir(parents=True)
    (experiments / "pretrain_causal.yaml").write_text(
        "data:\n  speech:\n    root: x/espeak_train\n"
    )
    (experiments / "pretrain_offline.yaml").write_text(
        "data:\n  speech:\n    root: x/espeak_train/with_real\n"
    )
    synthetic = make_pretrained.training_data("causal")
    recorded = make_pretrained.training_data("offline")
    assert "with_real" not in synthetic["data"] and synthetic["licence"].startswith("MIT (")
    assert "760 recorded prompts" in recorded["data"] and "CC BY-SA 3.0" in recorded["licence"]
