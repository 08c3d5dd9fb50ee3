"""The run dir can be trusted: resume=false sets an earlier run aside and "complete" needs a metrics.json written from
the finished checkpoint; stop messages say what the same command does; leftovers of killed writes are removed;
a signal during the final evaluation stops cleanly; a full disk, an unwritable folder and a dead DDP rank are clear
errors that keep the last checkpoint; a moved or copied run dir resumes; a run dir holding a symlink is refused
before anything is written; what resume reads from the dir (metrics.json, the checkpoint's step) is checked."""

from __future__ import annotations

import errno
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from dim_lightning.callbacks import Preempted
from dim_lightning.errors import DIMError
from dim_lightning.run.run_dir import check_run_dir, set_aside
from dim_lightning.train import train
from tests.conftest import SHORT_RUN, run_cli

RUN = SHORT_RUN
STOP = ["debug=preempt", "callbacks.preempt.step=1"]  # SIGTERM after batch 1 of 4: last.ckpt at step 2


def _stopped(make_config, run_dir: Path, *extra: str) -> Path:
    """Run RUN + STOP in `run_dir` until the signal stops it; return its last.ckpt (step 2)."""
    with pytest.raises(Preempted):
        train(make_config(*RUN, *STOP, *extra, output_dir=run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _files(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under `root`."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


# ---- 7: resume=false sets the earlier run aside; "complete" needs metrics.json of that checkpoint ----------
def test_resume_false_sets_the_earlier_run_aside(make_config, tmp_path, caplog) -> None:
    train(make_config(*RUN))
    earlier = _files(tmp_path)
    (tmp_path / "train.log").write_text("the earlier run's lines\n")
    with caplog.at_level(logging.INFO):
        fresh = train(make_config(*RUN, "model.beta=2", "resume=false"))
    [aside] = (tmp_path / "previous").iterdir()
    assert f"set the earlier run in {tmp_path} aside in {aside}" in caplog.text
    moved = _files(aside)
    assert moved.pop("train.log") == b"the earlier run's lines\n" and moved == earlier  # all of it, unchanged
    assert (tmp_path / "train.log").read_text() == ""  # the new run's log starts empty
    now = json.loads((tmp_path / "metrics.json").read_text())
    assert now["run_id"] != json.loads(earlier["metrics.json"])["run_id"] and fresh.trainer.global_step == 4
    assert _load(tmp_path / "checkpoints" / "last.ckpt")["hyper_parameters"]["run_config"]["model"]["beta"] == 2


def test_a_metrics_json_of_another_run_is_not_taken_for_this_ones(make_config, tmp_path, caplog) -> None:
    train(make_config(*RUN))
    stale = (tmp_path / "metrics.json").read_text()  # the earlier run's, at the same global_step (4)
    # another run afresh in the dir, stopped in its last step: training saved finished, no final evaluation
    command = [*RUN, "model.beta=2", "debug=preempt", "callbacks.preempt.step=3"]
    with pytest.raises(Preempted):
        train(make_config(*command, "resume=false"))
    (tmp_path / "metrics.json").write_text(stale)  # as resume=false used to leave it (it deleted nothing)
    with caplog.at_level(logging.INFO):
        redone = train(make_config(*command))  # the command that resumes: it must redo the evaluation
    assert redone.trainer is not None and "metrics.json is another run's" in caplog.text
    written = json.loads((tmp_path / "metrics.json").read_text())
    saved = _load(tmp_path / "checkpoints" / "last.ckpt")
    assert written["run_id"] == saved["callbacks"]["FinalEvaluation"]["run_id"] != json.loads(stale)["run_id"]
    assert train(make_config(*command)).trainer is None  # now complete


def test_a_finished_checkpoint_older_than_run_ids_is_complete_by_its_step(make_config, tmp_path) -> None:
    train(make_config(*RUN))
    last = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = _load(last)
    checkpoint["callbacks"].pop("FinalEvaluation", None)
    torch.save(checkpoint, last)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    metrics.pop("run_id", None)
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    assert train(make_config(*RUN)).trainer is None  # not an evaluation redone at every requeue


# ---- 8: a stop message says what the same command does, and the command that continues -----------------
def test_a_stop_in_a_resume_false_run_gives_the_command_that_continues_it(make_config, tmp_path, caplog) -> None:
    with caplog.at_level(logging.INFO), pytest.raises(Preempted):
        train(make_config(*RUN, *STOP, "resume=false"))
    assert "The same command (resume=false) would start afresh, setting this run aside" in caplog.text
    assert "The same command resumes" not in caplog.text
    args = shlex.split(caplog.text.split("to continue this run instead: python train.py ")[1].splitlines()[0])
    assert "resume=false" not in args and args[-1] == f"hydra.run.dir={tmp_path}"
    caplog.clear()
    with caplog.at_level(logging.INFO):
        continued = train(make_config(*args[:-1]))  # the given command
    assert "resuming from step 2 of epoch 0" in caplog.text and continued.trainer.global_step == 4


def test_the_stop_message_fits_the_command(make_config, tmp_path) -> None:
    from dim_lightning.run.resume_command import after_stop

    make_config(*RUN, f"hydra.run.dir={tmp_path}")
    assert after_stop(tmp_path, "resumes from it") == "The same command resumes from it."
    make_config(*RUN)  # the default run dir: a new timestamped one each time
    said = after_stop(tmp_path, "resumes from it")
    assert "would start a new run in a new timestamped dir" in said and said.endswith(f"hydra.run.dir={tmp_path}")
    make_config(*RUN, "ckpt_path=/runs/a/checkpoints/last.ckpt", f"hydra.run.dir={tmp_path}")
    said = after_stop(tmp_path, "resumes from it")
    assert "would start again from that file" in said and "ckpt_path=last" in said and "/runs/a" not in said[-200:]


# ---- 9: temporary files of killed writes -----------------------------------------------------------------
def test_temporary_files_of_killed_writes_are_removed_at_start(make_config, tmp_path, caplog) -> None:
    checkpoints = _stopped(make_config, tmp_path).parent
    leftovers = [checkpoints / ".last.ckpt.k3x_9abc.tmp", tmp_path / ".metrics.json.0123abcd.tmp"]
    kept = [checkpoints / "notes.tmp", tmp_path / ".last.ckpt.tmp", checkpoints / ".last.ckpt.toolong12.tmp.bak"]
    for path in leftovers + kept:
        path.write_bytes(b"\0" * 4096)
    (checkpoints / ".last.ckpt.abcdefgh.tmp").mkdir()  # a folder of that name is not ours
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train(make_config(*RUN, *STOP))  # the same command: resumes
    assert not any(p.exists() for p in leftovers) and all(p.exists() for p in kept)
    assert (checkpoints / ".last.ckpt.abcdefgh.tmp").is_dir() and f"Removed {leftovers[0]}" in caplog.text
    # 14: the global batch and its negatives, said once at the start
    assert caplog.text.count("Global batch: 32 images per forward step (1 device)") == 1
    assert "negatives are the 31 other images of the global batch" in caplog.text


def test_the_global_batch_note_counts_every_device() -> None:
    from dim_lightning.run.distributed import global_batch_note

    note = global_batch_note(32, 2, "dim_lightning.mi.negatives.all_pairs")
    assert "64 images per forward step (32 per device (data.batch_size) x 2 devices)" in note and "63 other" in note
    assert "its own device's 32 images" in global_batch_note(32, 2, "dim_lightning.mi.negatives.shuffled_pairs")


# ---- 10: the epoch a resume names --------------------------------------------------------------------------
def test_after_a_stop_at_an_epochs_end_the_resume_names_the_next_epoch(make_config, tmp_path, caplog) -> None:
    command = [
        *RUN,
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        "debug=preempt",
        "callbacks.preempt.step=2",
    ]
    with pytest.raises(Preempted):  # a signal in epoch 0's last batch: stops once that epoch has ended
        train(make_config(*command))
    with caplog.at_level(logging.INFO):
        assert train(make_config(*command)).trainer.global_step == 6
    assert "resuming from step 3 of epoch 1 (batch 0 of it)" in caplog.text


# ---- 11: a signal during the final evaluation -------------------------------------------------------------
class SignalAtFitEnd(pl.Callback):
    """Send this process `signal` (None: none) as fit ends, before the final evaluation (which runs after it)."""

    def __init__(self, signal: str | None = "SIGUSR2") -> None:
        self.signal = signal

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.signal is not None:
            os.kill(os.getpid(), getattr(signal, self.signal))


def test_a_signal_during_the_final_evaluation_logs_requeues_and_exits(make_config, tmp_path, caplog) -> None:
    requeued = []

    def checkpoint_and_try_requeue(signum, frame) -> None:  # the name submitit's requeue handler has
        requeued.append(signum)

    stopping = [*RUN, "+callbacks.stop._target_=tests.test_run_dir.SignalAtFitEnd"]
    previous = signal.signal(signal.SIGUSR2, checkpoint_and_try_requeue)
    try:
        with caplog.at_level(logging.INFO), pytest.raises(Preempted) as raised:
            train(make_config(*stopping))
        assert raised.value.code == 128 + signal.SIGUSR2 and requeued == [signal.SIGUSR2]
        assert "Stopped by SIGUSR2 after training ended (step 4" in caplog.text
        assert "before the final evaluation finished" in caplog.text and not (tmp_path / "metrics.json").exists()
        assert _load(tmp_path / "checkpoints" / "last.ckpt")["callbacks"]["EpochCheckpoint"]["finished"] is True
        assert signal.getsignal(signal.SIGUSR2) is checkpoint_and_try_requeue  # handed back
        with pytest.raises(Preempted):  # the same command: a fit that only redoes the evaluation, stopped alike
            train(make_config(*stopping))
        assert requeued == [signal.SIGUSR2] * 2 and signal.getsignal(signal.SIGUSR2) is checkpoint_and_try_requeue
    finally:
        signal.signal(signal.SIGUSR2, previous)
    redone = train(make_config(*stopping, "+callbacks.stop.signal=null", "ckpt_path=last"))
    assert redone.trainer.global_step == 4 and (tmp_path / "metrics.json").is_file()


# ---- 12: a full disk, an unwritable folder: a clear error, the last checkpoint kept -----------------------
def test_a_full_disk_while_saving_is_a_clear_error_and_keeps_the_last_checkpoint(
    make_config, tmp_path, monkeypatch
) -> None:
    last = _stopped(make_config, tmp_path)
    before = last.read_bytes()
    save = torch.save

    def full_disk(obj, file, *args, **kwargs):
        if isinstance(file, str | os.PathLike):
            return save(obj, file, *args, **kwargs)
        file.write(b"\0" * 4096)  # part of the file, then the disk is full
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/3: file write "
            "failed"
        )

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(DIMError, match="the disk is full") as raised:
        train(make_config(*RUN, *STOP))
    assert f"could not write {last}" in str(raised.value) and "previous last.ckpt" in str(raised.value)
    assert last.read_bytes() == before and sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]


def test_a_checkpoint_dir_that_became_unwritable_is_a_clear_error(make_config, tmp_path, monkeypatch) -> None:
    last = _stopped(make_config, tmp_path)
    before = last.read_bytes()
    mkstemp = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if Path(dir) == last.parent:
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(DIMError, match=rf"{last.parent} is not writable.*chmod"):
        train(make_config(*RUN, *STOP))
    assert last.read_bytes() == before


def test_an_unwritable_checkpoint_dir_stops_before_training(make_config, tmp_path, monkeypatch) -> None:
    last = _stopped(make_config, tmp_path)
    before, access = last.read_bytes(), os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != last.parent and access(path, mode, **kw))
    with pytest.raises(DIMError, match=rf"{last.parent} is not writable, so this run could save nothing"):
        train(make_config(*RUN, *STOP))
    assert last.read_bytes() == before and not (tmp_path / "metrics.json").exists()


class KillRank(pl.Callback):
    """SIGKILL DDP rank `rank` after optimizer step `step`: a rank that dies without warning (OOM killer)."""

    def __init__(self, rank: int = 1, step: int = 3) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow
def test_a_ddp_rank_that_dies_leaves_a_clear_error_and_the_last_checkpoint(tmp_path) -> None:
    run_dir = tmp_path / "run"
    result = run_cli(
        *(arg for arg in RUN if not arg.startswith("trainer.max_epochs")),
        "trainer=ddp_sim",
        "trainer.max_epochs=2",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        "+callbacks.kill._target_=tests.test_run_dir.KillRank",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "train.py: error: rank 0 of 2 lost contact with another rank" in result.stderr
    assert _load(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 2  # kept, and whole
    log = (run_dir / "train.log").read_text()  # 14: data.batch_size is per device
    assert "Global batch: 64 images per forward step (32 per device (data.batch_size) x 2 devices)" in log


# ---- 13: a moved or copied run dir resumes ------------------------------------------------------------------
def test_a_copied_run_dir_resumes_exactly_and_leaves_the_original_alone(make_config, tmp_path) -> None:
    straight = train(make_config(*RUN, output_dir=tmp_path / "straight")).trainer
    _stopped(make_config, tmp_path / "first")
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(tmp_path / "first", copy)
    original = _files(tmp_path / "first")
    resumed = train(make_config(*RUN, *STOP, output_dir=copy)).trainer
    assert resumed.global_step == 4 and _files(tmp_path / "first") == original
    expected = straight.lightning_module.state_dict()
    for name, tensor in resumed.lightning_module.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


# ---- 5: symlinks in a handed-over run dir ---------------------------------------------------------------
def _handed_over(tmp_path: Path) -> tuple[Path, Path]:
    """A run dir whose train.log, .hydra/ and checkpoints/ are links into `outside` (a copy made with cp -r)."""
    outside, run_dir = tmp_path / "outside", tmp_path / "handed_over"
    for folder in (outside / "hydra", outside / "checkpoints", run_dir):
        folder.mkdir(parents=True)
    (outside / "victim.log").write_text("theirs\n")
    (run_dir / "train.log").symlink_to(outside / "victim.log")
    (run_dir / ".hydra").symlink_to(outside / "hydra", target_is_directory=True)
    (run_dir / "checkpoints").symlink_to(outside / "checkpoints", target_is_directory=True)
    return run_dir, outside


@pytest.mark.parametrize("program", ["train", "evaluate"])
def test_a_run_dir_holding_a_symlink_is_refused_before_hydra_writes(tmp_path, monkeypatch, capsys, program) -> None:
    from dim_lightning.evaluate import main as evaluate_main
    from dim_lightning.train import main as train_main

    run_dir, outside = _handed_over(tmp_path)
    before = _files(outside)
    args = [*RUN] if program == "train" else ["ckpt=elsewhere/last.ckpt"]
    monkeypatch.setattr(sys, "argv", [program, *args, f"hydra.run.dir={run_dir}"])
    with pytest.raises(SystemExit) as exited:
        (train_main if program == "train" else evaluate_main)()
    err = capsys.readouterr().err
    prog = "train.py" if program == "train" else "python -m dim_lightning.evaluate"
    assert exited.value.code == 2 and err.startswith(f"{prog}: error: the run dir {run_dir} holds a symlink")
    assert "cp -rL" in err and _files(outside) == before


@pytest.mark.parametrize("kind", ["outside", "dangling", "fifo", "wandb a link", "inside", "wandb's own"])
def test_train_refuses_a_run_dir_with_a_link_leading_outside_or_a_fifo(make_config, tmp_path, kind) -> None:
    """Links below wandb/ are W&B's (its logs/debug-core.log leads into its cache) and W&B renames over them,
    writing through none; wandb/ itself, or a link anywhere else, would carry writes outside."""
    run_dir = tmp_path / "run"
    train(make_config(*RUN, output_dir=run_dir))
    (tmp_path / "theirs.json").write_text("{}")
    planted = run_dir / "notes"
    if kind == "outside":
        planted.symlink_to(tmp_path / "theirs.json")
    elif kind == "dangling":
        planted.symlink_to(run_dir / "gone")
    elif kind == "fifo":
        os.mkfifo(planted)  # reading it would wait for ever
    elif kind == "wandb a link":
        (run_dir / "wandb").symlink_to(tmp_path, target_is_directory=True)
    elif kind == "inside":
        planted.symlink_to("metrics.json")  # stays inside
    else:
        (run_dir / "wandb" / "offline-run-1" / "logs").mkdir(parents=True)
        (run_dir / "wandb" / "offline-run-1" / "logs" / "debug-core.log").symlink_to(tmp_path / "theirs.json")
        (run_dir / "wandb" / "latest-run").symlink_to(tmp_path / "gone")
    if kind in ("inside", "wandb's own"):
        assert train(make_config(*RUN, output_dir=run_dir)).trainer is None  # complete: nothing refused
        assert (tmp_path / "theirs.json").read_text() == "{}"
        return
    with pytest.raises(DIMError, match="leads outside it" if kind != "fifo" else "neither a file nor a folder"):
        train(make_config(*RUN, output_dir=run_dir))
    assert (tmp_path / "theirs.json").read_text() == "{}"


@pytest.mark.parametrize("shape", ["hard link", ".hydra a file", "train.log a folder", "last.ckpt a folder"])
def test_a_run_dir_with_a_hard_link_or_an_entry_of_the_wrong_kind_is_refused_before_hydra_writes(
    tmp_path, monkeypatch, capsys, shape
) -> None:
    """A hard link would carry the run's writes to the file's other name; a folder where a run writes a file broke
    Hydra's log set-up (a traceback) or, as checkpoints/last.ckpt, made the run start afresh, then fail."""
    from dim_lightning.train import main as train_main

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    victim = tmp_path / "victim.log"
    victim.write_text("theirs\n")
    if shape == "hard link":
        os.link(victim, run_dir / "train.log")
    elif shape == ".hydra a file":
        (run_dir / ".hydra").write_text("x")
    else:
        (run_dir / ("train.log" if shape == "train.log a folder" else "checkpoints/last.ckpt")).mkdir()
    monkeypatch.setattr(sys, "argv", ["train", *RUN, f"hydra.run.dir={run_dir}"])
    with pytest.raises(SystemExit) as exited:
        train_main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith(f"train.py: error: the run dir {run_dir} holds "), err
    assert ("a hard link" if shape == "hard link" else "where a run writes a") in err
    assert victim.read_text() == "theirs\n" and not (run_dir / ".hydra" / "config.yaml").exists()


@pytest.mark.slow
def test_cli_multirun_refuses_a_sweep_dir_holding_a_symlink(tmp_path) -> None:
    sweep_dir, outside = _handed_over(tmp_path)
    before = _files(outside)
    result = run_cli("-m", *RUN, "model.beta=1,2", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"train.py: error: the run dir {sweep_dir} holds a symlink" in result.stderr
    assert _files(outside) == before and sorted(os.listdir(sweep_dir)) == [".hydra", "checkpoints", "train.log"]


# ---- 6: what resume reads from the run dir is checked ----------------------------------------------------
def test_a_bad_metrics_json_is_a_clear_error(make_config, tmp_path) -> None:
    train(make_config(*RUN))
    metrics, last = tmp_path / "metrics.json", tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    for content, why in [
        (b"{not json", "is not JSON"),
        (b"[1, 2]", "is not a metrics.json"),
        (b'{"probe/val_acc": "high"}', "is not a metrics.json"),
        (b"[" * 100_000, "is not JSON"),
    ]:
        metrics.write_bytes(content)
        with pytest.raises(DIMError, match=why) as raised:
            train(make_config(*RUN))
        assert "the same command redoes the final evaluation" in str(raised.value)
    with metrics.open("wb") as file:
        file.truncate(64 << 20)  # 64 MiB (sparse): not read at all
    with pytest.raises(DIMError, match=r"is 67108864 bytes, far more than a metrics.json holds"):
        train(make_config(*RUN))
    assert last.read_bytes() == before


@pytest.mark.parametrize("step", ["two", -1, 2.0])
def test_a_checkpoint_whose_global_step_is_not_a_count_is_a_clear_error(make_config, tmp_path, step) -> None:
    last = _stopped(make_config, tmp_path)
    checkpoint = _load(last)
    checkpoint["global_step"] = step
    torch.save(checkpoint, last)
    with pytest.raises(DIMError, match=r"global_step.*not a count|global_step"):
        train(make_config(*RUN, *STOP))


def test_resume_false_keeps_a_bounded_tail_of_an_earlier_log(tmp_path, monkeypatch) -> None:
    """A handed-over run dir's train.log, sparse and 1 GiB (a few KB on disk), was copied whole into previous/
    (1.1 GB written; a terabyte would fill the disk): the last LOG_KEPT_BYTES are kept, with a note."""
    monkeypatch.setattr("dim_lightning.run.run_dir.LOG_KEPT_BYTES", 100)
    (tmp_path / "metrics.json").write_text("{}")
    with (tmp_path / "train.log").open("wb") as log:
        log.truncate(2**30)
        log.seek(2**30)
        log.write(b"the last line\n")
    moved = set_aside(tmp_path)
    kept = (moved / "train.log").read_bytes()
    assert kept.startswith(b"[the first 1073741738 bytes of this log were left out]\n") and kept.endswith(b"line\n")
    assert len(kept) < 200 and (tmp_path / "train.log").stat().st_size == 0


@pytest.mark.parametrize("name", ["version_\u00b2", "version_" + "9" * 247, "notes"])
def test_a_csv_folder_the_logger_cannot_number_from_is_refused(make_config, tmp_path, name) -> None:
    """Lightning's CSV logger numbers its next version from the names under csv/: version_² (a digit to
    str.isdigit, not to int) or 247 nines ended in a traceback."""
    run_dir = tmp_path / "run"
    (run_dir / "csv" / name).mkdir(parents=True)
    with pytest.raises(DIMError, match="which is not a version_<n> folder"):
        train(make_config(*RUN, output_dir=run_dir))


def test_set_aside_refuses_a_previous_link_and_a_taken_name(tmp_path, monkeypatch) -> None:
    """previous/ linked to csv/ inside the run dir would move csv/ into itself; 1000 taken names raised
    FileExistsError."""
    (tmp_path / "csv").mkdir()
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "previous").symlink_to("csv", target_is_directory=True)
    with pytest.raises(DIMError, match="is not a folder \\(or is a link\\)"):
        set_aside(tmp_path)
    (tmp_path / "previous").unlink()
    monkeypatch.setattr("dim_lightning.run.run_dir.time.strftime", lambda _: "now")
    for suffix in ["", *(f".{n}" for n in range(1, 1000))]:
        (tmp_path / "previous" / f"now{suffix}").mkdir(parents=True)
    with pytest.raises(DIMError, match="holds now and 999 numbered copies of it"):
        set_aside(tmp_path)
    assert (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("shape", ["csv a link inside", "features.npz a folder", "evaluate.log a folder"])
def test_the_names_a_run_or_evaluate_writes_are_checked_too(tmp_path, monkeypatch, capsys, shape) -> None:
    """A link inside the run dir at csv/ hid csv/version_² from the check (a traceback); folders at the final
    evaluation's output names failed the run after all its training (IsADirectoryError)."""
    from dim_lightning.train import main as train_main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if shape == "csv a link inside":
        (run_dir / "foo" / "version_\u00b2").mkdir(parents=True)
        (run_dir / "csv").symlink_to("foo", target_is_directory=True)
    else:
        (run_dir / shape.split()[0]).mkdir()
    monkeypatch.setattr(sys, "argv", ["train", *RUN, f"hydra.run.dir={run_dir}"])
    with pytest.raises(SystemExit) as exited:
        train_main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith(f"train.py: error: the run dir {run_dir} holds "), err


@pytest.mark.parametrize("planted", ["multirun.yaml", "0/.hydra/config.yaml", "1/checkpoints/last.ckpt", "2"])
def test_a_sweep_dir_with_a_link_at_a_name_a_job_writes_is_refused(tmp_path, planted) -> None:
    """Hydra writes multirun.yaml and each job's .hydra/ before the job's own check: links there, or a job dir that
    links to another (all leading inside the sweep dir), made it overwrite what they led to."""
    sweep_dir = tmp_path / "sweep"
    (sweep_dir / planted).parent.mkdir(parents=True)
    (sweep_dir / "keep.txt").write_text("precious")
    (sweep_dir / "victim").mkdir()  # another job's dir: a job dir "2" linked there would write into it
    (sweep_dir / planted).symlink_to(sweep_dir / ("victim" if planted == "2" else "keep.txt"))
    with pytest.raises(DIMError, match="to a folder, or stands where the run writes"):
        check_run_dir(sweep_dir)
    assert (sweep_dir / "keep.txt").read_text() == "precious"


def test_the_links_w_and_b_leaves_in_a_sweeps_job_dirs_are_its_own(tmp_path) -> None:
    """A sweep dir that W&B wrote into (<job>/wandb/latest-run -> its run folder) was refused on a second run."""
    (tmp_path / "0" / "wandb" / "offline-run-1").mkdir(parents=True)
    (tmp_path / "0" / "wandb" / "latest-run").symlink_to("offline-run-1", target_is_directory=True)
    check_run_dir(tmp_path)
    (tmp_path / "0" / "notes").symlink_to("wandb", target_is_directory=True)
    with pytest.raises(DIMError, match="to a folder"):
        check_run_dir(tmp_path)
