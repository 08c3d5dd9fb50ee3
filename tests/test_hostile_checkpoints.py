"""Checkpoints from someone else, built to harm rather than to run code: each is a plain-data file that a
`weights_only` load accepts. Reading one never deletes or writes outside the run dir, never takes a path from the
file, costs memory and time bounded by the file, and ends in one clear error (exit 2), never a traceback."""

from __future__ import annotations

import random
import re
import shutil
import signal
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
import torch
from omegaconf import OmegaConf

from dim_lightning import load_encoder
from dim_lightning.config.builders import load_checkpoint
from dim_lightning.errors import DIMError
from dim_lightning.eval.callbacks import OnlineLinearProbe
from dim_lightning.evaluate import _trained_on, evaluate
from dim_lightning.models.encoders import DCGAN32Encoder
from dim_lightning.run.checkpoints import AtomicCheckpointIO, read_checkpoint
from dim_lightning.train import train
from tests.conftest import FAST, SMALL_CRITIC, compose_config, run_cli
from tests.datasets import write_image_folder

SHORT = [
    *FAST,
    SMALL_CRITIC["dot"],
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "eval.final=false",
    "model.z_dim=32",
    "data.image_size=16",
    "callbacks.model_checkpoint.every_n_train_steps=2",
]
FOLDER = ["data=image_folder", "data.batch_size=8", "data.val_fraction=0.2"]
QUICK_EVAL = ["eval.random_init_baseline=false", "eval.suite.retrieval=false", "eval.suite.export_features=false"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """checkpoints/last.ckpt of a short real run (3 steps on digits), shared by every test of this file."""
    run = tmp_path_factory.mktemp("trained")
    train(compose_config(*SHORT, output_dir=run))
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def trained_on_a_folder(tmp_path_factory) -> Path:
    """checkpoints/last.ckpt of a short real run on an image folder (its saved config holds data.root)."""
    folder = write_image_folder(tmp_path_factory.mktemp("photos"), per_class=12)
    run = tmp_path_factory.mktemp("trained_rgb")
    train(compose_config(*SHORT, *FOLDER, f"data.root={folder}", "trainer.limit_train_batches=2", output_dir=run))
    shutil.rmtree(folder)  # the file names a folder the victim does not have
    return run / "checkpoints" / "last.ckpt"


def edited(real: Path, folder: Path, edit: Callable[[dict[str, Any]], None], name: str = "hostile.ckpt") -> Path:
    """A copy of the real checkpoint changed by `edit`, saved as torch.save writes any checkpoint."""
    checkpoint = torch.load(real, map_location="cpu", weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, folder / name)
    return folder / name


def _step_checkpoint_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    return next(state for key, state in checkpoint["callbacks"].items() if key.startswith("StepCheckpoint"))


def _run_config(checkpoint: dict[str, Any]) -> dict[str, Any]:
    return checkpoint["hyper_parameters"]["run_config"]


@pytest.mark.parametrize("previous", ["local://{victim}", "{dirpath}/../../victim"])
def test_a_checkpoints_callback_state_never_deletes_outside_the_run(trained, make_config, tmp_path, previous) -> None:
    """Lightning removes the "previous" last checkpoint when it saves the next one, recursively, on any fsspec
    protocol (`local://` skips its directory check; `..` passes it, lexically)."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    run = tmp_path / "run"
    dirpath = run / "checkpoints"

    def edit(checkpoint: dict[str, Any]) -> None:
        state = _step_checkpoint_state(checkpoint)
        state.update(dirpath=str(dirpath), last_model_path=previous.format(victim=victim, dirpath=dirpath))

    hostile = edited(trained, tmp_path, edit)
    resumed = train(make_config(*SHORT, "trainer.max_epochs=2", f"ckpt_path={hostile}", output_dir=run))
    assert resumed.trainer.global_step == 6  # two periodic saves (steps 4 and 6) came after the resume
    assert (victim / "thesis.tex").read_text() == "years of work"


def test_the_checkpoint_io_removes_only_checkpoint_files(tmp_path) -> None:
    folder, link, ckpt = tmp_path / "folder", tmp_path / "link.ckpt", tmp_path / "old.ckpt"
    folder.mkdir()
    (folder / "keep").write_text("x")
    link.symlink_to(folder / "keep")
    ckpt.write_bytes(b"old")
    io = AtomicCheckpointIO()
    for path in (folder, f"local://{folder}", link, folder / "keep"):
        io.remove_checkpoint(path)
    assert (folder / "keep").read_text() == "x" and link.is_symlink()
    io.remove_checkpoint(ckpt)  # a checkpoint file, but not one this process wrote (its name came from a state)
    assert ckpt.read_bytes() == b"old"
    io.save_checkpoint({"step": 1}, tmp_path / "mine.ckpt")
    io.remove_checkpoint(tmp_path / "mine.ckpt")
    assert not (tmp_path / "mine.ckpt").exists()


def test_any_path_key_of_a_rebuilt_group_is_dropped_from_the_saved_config(trained, monkeypatch) -> None:
    """A data set with its own file key (checked as a `path` in the schema) is covered without a list to update."""
    from dim_lightning.config import checks, saved
    from dim_lightning.config.schema.key import Key

    monkeypatch.setitem(saved.SCHEMA, "data.labels_file", Key("data.labels_file", checks.path, "a toy's file"))
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    _run_config(checkpoint)["data"].update(labels_file="/etc/shadow", root="/elsewhere")
    rebuilt = saved.saved_run_config(checkpoint, "hostile.ckpt")
    assert rebuilt.data.labels_file is None and rebuilt.data.root is None


def test_evaluate_takes_no_path_from_the_checkpoint(trained_on_a_folder, make_config, tmp_path) -> None:
    """The saved config's data.root and data.cache_dir would make evaluate read that folder and write its cache
    (creating folders, `..` included) wherever the file says."""
    photos = write_image_folder(tmp_path / "photos", per_class=12)
    outside = tmp_path / "outside" / "new" / ".." / "dir"

    def edit(checkpoint: dict[str, Any]) -> None:
        _run_config(checkpoint)["data"].update(root=str(photos), cache_dir=str(outside))

    hostile = edited(trained_on_a_folder, tmp_path, edit)
    cfg = make_config(f"ckpt={hostile}", *QUICK_EVAL, config_name="evaluate", output_dir=tmp_path / "eval")
    with pytest.raises(DIMError, match=r"saved paths are never used, so name it: data=image_folder data.root="):
        evaluate(cfg)
    named = make_config(
        f"ckpt={hostile}",
        *FOLDER,
        f"data.root={photos}",
        "data.image_size=16",
        *QUICK_EVAL,
        config_name="evaluate",
        output_dir=tmp_path / "eval",
    )
    assert "probe/test_acc" in evaluate(named)
    assert not (tmp_path / "outside").exists()
    assert list((photos / ".dim_cache").glob("*.npy"))  # the cache is where the user's data.root says


@contextmanager
def _torch_layout_zip(path: Path, compression: int = zipfile.ZIP_STORED) -> Iterator[zipfile.ZipFile]:
    """A zip written by Python's zipfile with the end records torch.save writes (zip64 ones, which zipfile writes
    only for large archives otherwise), so that a test's archive reaches the checks past the layout's."""
    with mock.patch.object(zipfile, "ZIP_FILECOUNT_LIMIT", 0), zipfile.ZipFile(path, "w", compression) as archive:
        yield archive


@pytest.mark.parametrize("change", ["bytes before", "bytes after", "zipfile's own end records"])
def test_an_archive_not_laid_out_as_torch_writes_it_is_refused(trained, tmp_path, change) -> None:
    """Bytes in front of the archive, or a second zip64 end record, made Python's zipfile (which checked the
    entries) and torch's reader (which loaded them) find different directories: a hidden compressed entry took
    2 GB from a 42 MB file. Only the layout torch.save writes is read."""
    data, path = trained.read_bytes(), tmp_path / "other.ckpt"
    if change == "zipfile's own end records":
        with zipfile.ZipFile(trained) as source, zipfile.ZipFile(path, "w") as target:
            for entry in source.infolist():
                target.writestr(entry, source.read(entry))
    else:
        path.write_bytes(b"\0" * 64 + data if change == "bytes before" else data + b"\0" * 64)
    for read in (read_checkpoint, AtomicCheckpointIO().load_checkpoint):
        with pytest.raises(DIMError, match=r"does not end in the zip records torch\.save writes"):
            read(path)
    with _torch_layout_zip(tmp_path / "rewritten.ckpt") as target, zipfile.ZipFile(trained) as source:
        for entry in source.infolist():
            target.writestr(entry, source.read(entry))
    assert read_checkpoint(tmp_path / "rewritten.ckpt")["global_step"] == 3  # the same entries, laid out so


def _rewritten(real: Path, path: Path, **records: Callable[[bytes], bytes]) -> Path:
    """The real checkpoint written again by torch's own archive writer (so laid out as torch.save writes it), the
    records named in `records` (dots for slashes: data.18 is data/18) changed by their function."""
    reader, writer = torch._C.PyTorchFileReader(str(real)), torch._C.PyTorchFileWriter(str(path))
    changes = {name.replace(".", "/"): change for name, change in records.items()}
    for name in ["data.pkl", *(n for n in reader.get_all_records() if n not in ("data.pkl", ".data/serialization_id"))]:
        data = changes.get(name, lambda old: old)(reader.get_record(name))
        writer.write_record(name, data, len(data))
    writer.write_end_of_file()
    return path


@pytest.mark.parametrize("record", ["version", "storage"])
def test_a_record_torch_save_never_writes_is_one_clear_error(trained, tmp_path, record) -> None:
    """A version torch's reader cannot parse ended in an IndexError traceback; a storage record shorter than its
    tensor was read (memory-mapped) from the bytes of the next records."""
    if record == "version":
        hostile = _rewritten(trained, tmp_path / "v.ckpt", version=lambda old: b"99999999999999999999999\n")
    else:
        storage = next(n for n in torch._C.PyTorchFileReader(str(trained)).get_all_records() if n.startswith("data/"))
        hostile = _rewritten(trained, tmp_path / "s.ckpt", **{storage.replace("/", "."): lambda old: old[:4]})
    for read in (read_checkpoint, AtomicCheckpointIO().load_checkpoint, load_encoder):
        with pytest.raises(DIMError, match=r"is not a PyTorch checkpoint|does not match expected size"):
            read(hostile)


def test_the_entry_count_is_checked_before_any_entry_is_listed(trained, tmp_path, monkeypatch) -> None:
    """1.5 million directory entries (an 89 MB file) took 1 GB as zipfile listed them before their count was
    checked: the count in the end record is checked first."""
    monkeypatch.setattr("dim_lightning.run.torch_archive.MAX_ENTRIES", 100)  # a real checkpoint holds 159

    def listed(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("zipfile listed the entries first")

    monkeypatch.setattr("dim_lightning.run.torch_archive.zipfile.ZipFile", listed)
    with pytest.raises(DIMError, match=r"holds \d+ entries in a \d+-byte directory, far more than"):
        read_checkpoint(trained)


def _deflated(real: Path, path: Path, extra: bytes = b"") -> Path:
    """The real checkpoint's entries written again with deflate compression (plus an `extra` entry)."""
    with zipfile.ZipFile(real) as source, _torch_layout_zip(path, zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            target.writestr(entry.filename, source.read(entry))
        if extra:
            target.writestr("archive/data/99999", extra)
    return path


def _declared_huge(real: Path, path: Path) -> Path:
    """The real checkpoint with its first entry's sizes in the zip directory changed to 3 GiB."""
    shutil.copy(real, path)
    with zipfile.ZipFile(path) as archive:
        start = archive.start_dir
    data = bytearray(path.read_bytes())
    assert data[start : start + 4] == b"PK\x01\x02"
    data[start + 20 : start + 28] = (3 * 2**30).to_bytes(4, "little") * 2
    path.write_bytes(bytes(data))
    return path


def test_a_compressed_or_oversized_archive_is_refused_before_anything_is_inflated(trained, tmp_path) -> None:
    bomb = _deflated(trained, tmp_path / "bomb.ckpt", extra=bytes(64 * 2**20))
    assert bomb.stat().st_size < trained.stat().st_size  # 64 MiB of zeros inflate from a few KiB
    for path, message in ((bomb, "holds compressed entries"), (_declared_huge(trained, tmp_path / "big.ckpt"), "")):
        for read in (read_checkpoint, AtomicCheckpointIO().load_checkpoint):
            with pytest.raises(DIMError, match=message or "3221225472-byte structure, far more than"):
                read(path)


class _Timeout(Exception):
    pass


def _within(seconds: int, call: Callable[[], Any]) -> Any:
    """`call()`, or `_Timeout` after `seconds` (the old code walked some files for hours)."""

    def expire(*_):
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        return call()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_config_of_shared_or_deeply_nested_lists_is_refused_at_once(trained, tmp_path) -> None:
    def shared(checkpoint: dict[str, Any]) -> None:
        node: list = ["leaf"]
        for _ in range(6):
            node = [node] * 64  # 2^36 paths when walked as a tree, 6 lists in the file
        _run_config(checkpoint)["eval"]["suite"]["places"] = node

    def deep(checkpoint: dict[str, Any]) -> None:
        node: list = []
        for _ in range(5000):
            node = [node]
        _run_config(checkpoint)["eval"]["extra"] = node

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # torch.save pickles recursively
    try:
        files = {"reached twice": edited(trained, tmp_path, shared, "shared.ckpt")}
        files["nests over 24 levels"] = edited(trained, tmp_path, deep, "deep.ckpt")
    finally:
        sys.setrecursionlimit(limit)
    for message, path in files.items():
        for read in (lambda p=path: load_checkpoint(str(p)), lambda p=path: load_encoder(p)):
            with pytest.raises(DIMError, match=message):
                _within(20, read)


def test_a_tensor_that_claims_more_elements_than_its_bytes_is_refused(trained, tmp_path) -> None:
    def edit(checkpoint: dict[str, Any]) -> None:
        checkpoint["callbacks"]["NonFiniteGuard"]["skipped"] = torch.zeros(1).expand(2**40)

    with pytest.raises(DIMError, match=r"tensor of 1099511627776 elements stored in 4 bytes"):
        read_checkpoint(edited(trained, tmp_path, edit))


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit that sets the dotted `path` of a checkpoint (`run_config.` for the saved run config); `...` deletes."""

    def edit(checkpoint: dict[str, Any]) -> None:
        node: Any = checkpoint
        if path.startswith("state_dict."):  # weight names hold dots
            parts = path.split(".", 1)
        else:
            parts = path.replace("run_config.", "hyper_parameters.run_config.", 1).split(".")
        for part in parts[:-1]:
            node = node[int(part) if isinstance(node, list) else part]
        if value is ...:
            del node[parts[-1]]
        else:
            node[parts[-1]] = value

    return edit


# What evaluate and load_encoder rebuild: each edit is listed by name, before any model is built.
REBUILD_CASES = {
    "z_dim far too large": (_set("run_config.model.z_dim", 2**19), "model.z_dim=524288 must be an integer in [1, 40"),
    "z_dim its weights do not have": (_set("run_config.model.z_dim", 4096), "head.mean.weight has shape (32, 1024)"),
    "a million workers": (_set("run_config.data.num_workers", 10**6), "data.num_workers=1000000 must be null or an"),
    "a weight reshaped": (_set("state_dict.encoder.head.mean.weight", torch.zeros(5, 5)), "has shape (5, 5)"),
    "a weight missing": (_set("state_dict.encoder.head.mean.bias", ...), "head.mean.bias is missing"),
    "model is a list": (_set("run_config.model", [1, 2]), "model is a list, not a mapping"),
    "data is a tensor": (_set("run_config.data", torch.zeros(3)), "data is a Tensor, not a mapping"),
    "data is missing": (_set("run_config.data", ...), "data is missing, not a mapping"),
    "a value is a tensor": (_set("run_config.model.alpha", torch.ones(1)), "model.alpha is a Tensor"),
    "data is partial": (_set("run_config.data._partial_", True), "data._partial_ is not a key of a train config"),
    "an unknown argument": (_set("run_config.data.colour", "blue"), "data.colour is not a key of a train config"),
    "positional arguments": (_set("run_config.encoder._args_", [1]), "encoder._args_ is not a key"),
    "optimizer is a list": (_set("run_config.model.optimizer", [1]), "model.optimizer must be a mapping of its keys"),
    "z_dim is missing": (_set("run_config.model.z_dim", ...), "could not be rebuilt (ConfigAttributeError"),
    "global_step is a string": (_set("global_step", "3"), "global_step must be a count"),
    "a key that is a tuple": (_set("notes", {("a" * 1000,) * 1000: 0}), "notes has a key a tuple"),
    "a key of 2000 characters": (_set("notes", [{"k" * 2000: 0}] * 1), "notes.0 has a key of 2000 characters"),
    "a string of a megabyte": (_set("run_config.model.note", "x" * 2**20), "holds a string of 1048576 characters"),
    "a version that is not one": (_set("pytorch-lightning_version", "9" * 500), "must be a pytorch-lightning ver"),
}


@pytest.mark.parametrize("case", REBUILD_CASES)
def test_a_malformed_checkpoint_is_one_clear_error_for_evaluate_and_load_encoder(trained, tmp_path, case) -> None:
    edit, message = REBUILD_CASES[case]
    hostile = edited(trained, tmp_path, edit)
    for load in (lambda: load_checkpoint(str(hostile)), lambda: load_encoder(hostile)):
        with pytest.raises(DIMError, match=re.escape(message)):
            load()


def _first_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    return checkpoint["optimizer_states"][0]["state"][0]


def _probe(checkpoint: dict[str, Any]) -> dict[str, Any]:
    return checkpoint["callbacks"]["OnlineLinearProbe"]["per_rank"][0]


# What a resume restores: each edit is listed by name before Lightning restores anything (the ones that would
# otherwise broadcast silently into training are marked).
RESUME_CASES = {
    "a weight reshaped": (_set("state_dict.encoder.head.mean.weight", torch.zeros(5, 5)), "has shape (5, 5)"),
    "loop progress is a string": (_set("loops.fit_loop.epoch_progress", "x"), "epoch_progress is a str, not a"),
    "the fit loop is missing": (_set("loops.fit_loop", ...), "loops.fit_loop is missing"),
    "past max_epochs": (_set("loops.fit_loop.epoch_progress.current.completed", 5), "past trainer.max_epochs=2"),
    "Adam moments that broadcast": (
        lambda c: _first_state(c).update(exp_avg=torch.zeros(1)),
        "optimizer_states.0.state.0.exp_avg must be a torch.float32 tensor of its parameter's shape (64, 1, 4, 4)",
    ),
    "a learning rate that is a string": (_set("optimizer_states.0.param_groups.0.lr", "x"), "lr must be a number"),
    "another Adam": (_set("optimizer_states.0.param_groups.0.amsgrad", True), "amsgrad is True, but this run's"),
    "RNG states that do not restore": (
        lambda c: c["rng_per_rank"][0].update(torch=torch.zeros(5056, dtype=torch.uint8)),
        "rng_per_rank.0 does not restore",
    ),
    "a count that is a string": (_set("callbacks.NonFiniteGuard.skipped", "x"), "state.skipped must be an integer"),
    "an Adam step past any run": (lambda c: _first_state(c).update(step=torch.tensor(2.0**1000)), "in [0, 2**53]"),
    "an Adam step that is a boolean": (lambda c: _first_state(c).update(step=torch.tensor(True)), "must be a number"),
    "an Adam step that is NaN": (lambda c: _first_state(c).update(step=float("nan")), "step must be a count in"),
    "an Adam step of int8": (lambda c: _first_state(c).update(step=torch.tensor(126, dtype=torch.int8)), "(a 0-dim"),
    "Adam moments of NaN": (lambda c: _first_state(c)["exp_avg"].fill_(float("nan")), "exp_avg must hold finite"),
    "a negative second moment": (lambda c: _first_state(c)["exp_avg_sq"].fill_(-1.0), "finite values, none negative"),
    "float64 moments of 1e300": (
        lambda c: _first_state(c).update(exp_avg_sq=_first_state(c)["exp_avg_sq"].double().fill_(1e300)),
        "exp_avg_sq must be a torch.float32 tensor",
    ),
    "epoch sums that broadcast": (
        _set("callbacks.ResumableEpochMeans.sums_per_rank", [{"train/loss": {"value": torch.ones(7)}}]),
        "sums_per_rank.0.train/loss must hold a single-number value and count",
    ),
    "a probe of other classes": (
        lambda c: _probe(c)["classifier"].update(weight=torch.zeros(3, 32)),
        "per_rank.0.classifier.weight must be a torch.float32 tensor of shape (10, 32)",
    ),
    "a position past the epoch": (_set("DigitsDataModule.train_position", (1, 10**6)), "is at batch 1000000 of"),
    "a probe asking for gigabytes": (
        lambda c: _probe(c)["classifier"].update(weight=torch.empty(0, 2**30)),
        "per_rank.0.classifier.weight must be a torch.float32 tensor of shape (10, 1073741824)",
    ),
    "a run id that is not one": (_set("callbacks.FinalEvaluation.run_id", "../x"), "must hold run_id, 32 hexadecimal"),
}
FAST_RESUME_CASES = ("Adam moments that broadcast", "epoch sums that broadcast", "a probe asking for gigabytes")


@pytest.mark.parametrize(
    "case", [c if c in FAST_RESUME_CASES else pytest.param(c, marks=pytest.mark.slow) for c in RESUME_CASES]
)
def test_a_malformed_training_state_is_one_clear_error_before_it_is_restored(
    trained, make_config, tmp_path, case
) -> None:
    edit, message = RESUME_CASES[case]
    hostile = edited(trained, tmp_path, edit)
    with pytest.raises(DIMError, match=re.escape(message)) as raised:
        train(make_config(*SHORT, "trainer.max_epochs=2", f"ckpt_path={hostile}", output_dir=tmp_path / "run"))
    assert str(raised.value).startswith(f"ckpt_path={hostile} cannot be resumed by this run (")
    assert not (tmp_path / "run" / "checkpoints").exists()


def _containers_copied(value: Any) -> Any:
    """`value` with its dicts and lists copied and its tensors shared (each copy costs a file a few bytes)."""
    if isinstance(value, dict):
        return {key: _containers_copied(item) for key, item in value.items()}
    return [_containers_copied(item) for item in value] if isinstance(value, list) else value


def test_a_per_rank_list_longer_than_any_run_is_refused_at_once(trained) -> None:
    """20,000 probe entries (28 MB) took a minute to check; a run has at most 4096 ranks."""
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    entry = _probe(checkpoint)
    trainer = SimpleNamespace(datamodule=SimpleNamespace(num_classes=10))
    probe = OnlineLinearProbe()
    assert probe.state_problems({"per_rank": [_containers_copied(entry) for _ in range(2)]}, trainer) == []
    many = {"per_rank": [_containers_copied(entry) for _ in range(5000)]}
    assert _within(5, lambda: probe.state_problems(many, trainer)) == [
        "per_rank must be a list of each rank's state (1 to 4096 ranks)"
    ]


def test_the_optimizer_settings_are_this_runs_and_this_devices_not_the_files(trained, make_config, tmp_path) -> None:
    """A GPU run's capturable (or fused) Adam resumes on a CPU; a file cannot pick a kernel this device lacks, nor
    a learning rate (lr 0 trained nothing, exit 0) or weight decay of its own."""
    edits = (
        _set("optimizer_states.0.param_groups.0.capturable", True),
        _set("optimizer_states.0.param_groups.0.lr", 0.0),
        _set("optimizer_states.0.param_groups.0.weight_decay", 1e6),
        _probe_flag("capturable", True),
        _probe_flag("lr", 0.0),
    )
    hostile = edited(trained, tmp_path, lambda checkpoint: [edit(checkpoint) for edit in edits])
    cfg = make_config(*SHORT, "trainer.max_epochs=2", f"ckpt_path={hostile}", output_dir=tmp_path / "run")
    resumed = train(cfg)
    assert resumed.trainer.global_step == 6
    group = resumed.trainer.optimizers[0].param_groups[0]
    assert (group["capturable"], group["lr"], group["weight_decay"]) == (False, cfg.model.lr, 0.0)
    probe = next(c for c in resumed.trainer.callbacks if isinstance(c, OnlineLinearProbe))
    assert probe.optimizer.param_groups[0]["lr"] > 0


def _probe_flag(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda checkpoint: _probe(checkpoint)["optimizer"]["param_groups"][0].update({name: value})


@pytest.mark.slow
def test_a_malformed_training_state_exits_2_from_the_command_line(trained, tmp_path) -> None:
    hostile = edited(trained, tmp_path, RESUME_CASES["Adam moments that broadcast"][0])
    result = run_cli(
        *SHORT, "trainer.max_epochs=2", f"ckpt_path={hostile}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "cannot be resumed by this run (1 problem)" in result.stderr


MEASURE = """
import resource, sys
from dim_lightning import load_encoder
from dim_lightning.config.builders import load_checkpoint
from dim_lightning.errors import DIMError
from dim_lightning.eval.callbacks import OnlineLinearProbe
from dim_lightning.models.encoders import DCGAN32Encoder
from dim_lightning.run.checkpoints import AtomicCheckpointIO
load_checkpoint(sys.argv[1]), load_encoder(sys.argv[1])  # a real checkpoint: the baseline
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
resume_load = AtomicCheckpointIO().load_checkpoint  # reads the file; the resume then checks it against the run
for path in sys.argv[2:]:
    for load in (load_checkpoint, load_encoder, resume_load):
        try:
            load(path)
        except DIMError:
            continue
        if load is not resume_load or "bomb" in path:
            sys.exit(f"{load} read {path}")
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) // 1024)
"""


def test_evaluate_rebuilds_the_checkpoints_data_set_from_conf_at_its_image_size(trained, tmp_path) -> None:
    """The saved data config (validated) is the data set, but what it costs (batch size, workers, and the number
    of generated images: 1M + 1M took minutes) is conf/'s for that option: like its paths, it may come from
    someone else."""

    def edit(checkpoint: dict[str, Any]) -> None:
        data = {"_target_": "dim_lightning.data.synthetic.SyntheticDataModule", "num_train": 1000, "channels": 1}
        data["num_classes"] = 100_000  # the probe's output layer: 1.2 GB
        _run_config(checkpoint)["data"].update(data, batch_size=65536, num_workers=64)
        for key in ("name", "test_fraction", "val_fraction", "split_seed"):  # digits' keys, not synthetic's
            _run_config(checkpoint)["data"].pop(key, None)

    saved = load_checkpoint(str(edited(trained, tmp_path, edit)))
    data = _trained_on(saved, trust=False)
    assert (data.num_train, data.num_classes, data.batch_size, data.num_workers) == (4096, 10, 64, 0)  # conf/'s
    assert _trained_on(saved, trust=True).batch_size == 65536
    assert (data.image_size, data.channels) == (16, 1)
    foreign = load_checkpoint(str(edited(trained, tmp_path, _set("run_config.data.num_classes", 3), "f.ckpt")))
    with pytest.raises(DIMError, match="holds num_classes, which data=digits does not take"):
        _trained_on(foreign, trust=False)


def _deflate_bomb(real: Path, path: Path, size: int) -> Path:
    """The real checkpoint deflated, its largest tensor record replaced by `size` zero bytes (a few MiB on disk)."""
    with zipfile.ZipFile(real) as source, _torch_layout_zip(path, zipfile.ZIP_DEFLATED) as target:
        largest = max(source.infolist(), key=lambda entry: entry.file_size)
        for entry in source.infolist():
            if entry is not largest:
                target.writestr(entry.filename, source.read(entry))
        with target.open(largest.filename, "w", force_zip64=True) as record:
            for _ in range(size // 2**24):
                record.write(bytes(2**24))
    return path


@pytest.mark.slow
def test_small_hostile_files_cost_little_memory(trained, tmp_path) -> None:
    """The files that took gigabytes (a deflate bomb: 2.4 GiB in Lightning's resume load; a z_dim its weights do
    not have: 2.7 GiB in evaluate) are refused with less than 100 MiB above reading a real checkpoint."""
    files = [
        _deflate_bomb(trained, tmp_path / "bomb.ckpt", 2**31),
        edited(trained, tmp_path, _set("run_config.model.z_dim", 4096), "wide.ckpt"),
        edited(trained, tmp_path, _set("run_config.model.z_dim", 2**19), "wider.ckpt"),
        edited(trained, tmp_path, _set("state_dict.encoder.head.mean.bias", torch.zeros(1).expand(2**34)), "v.ckpt"),
    ]
    assert all(path.stat().st_size < 2 * trained.stat().st_size for path in files)
    result = run_cli(str(trained), *map(str, files), cwd=tmp_path, program=("-c", MEASURE))
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) < 100, result.stdout


EDITS = (
    ...,
    "x",
    -1,
    2**70,
    2**1100,
    float("nan"),
    None,
    [],
    {},
    (),
    (1, 2),
    torch.zeros(3),
    torch.zeros(()),
    torch.tensor(True),
)


def _key_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """The key path of every value under a checkpoint's containers (tensors are leaves)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list | tuple) else ()
    return [path for key, child in items for path in [(*prefix, key), *_key_paths(child, (*prefix, key))]]


def random_edit(checkpoint: dict[str, Any], rng: random.Random) -> str:
    """Replace (or delete) one value of `checkpoint` chosen at random, each top-level key equally likely; return
    what was done."""
    top = rng.choice(sorted(checkpoint))
    path = rng.choice([(top,), *_key_paths(checkpoint[top], (top,))])
    value = rng.choice(EDITS)
    parent = checkpoint
    for key in path[:-1]:
        if isinstance(parent[key], tuple):
            parent[key] = list(parent[key])
        parent = parent[key]
    if value is ...:
        parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return f"{'.'.join(map(str, path))} = {value!r}"


@pytest.mark.slow
def test_any_single_edit_of_a_checkpoint_resumes_or_is_one_clear_error(trained, make_config, tmp_path) -> None:
    rng = random.Random(25)
    for index in range(20):
        checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
        done = random_edit(checkpoint, rng)
        torch.save(checkpoint, tmp_path / f"{index}.ckpt")
        run = tmp_path / f"run{index}"
        try:
            train(
                make_config(*SHORT, "trainer.max_epochs=2", f"ckpt_path={tmp_path / f'{index}.ckpt'}", output_dir=run)
            )
        except DIMError:
            continue
        except Exception as error:
            raise AssertionError(f"resuming after {done} raised {type(error).__name__}: {error}") from error


class OwnEncoder(DCGAN32Encoder):
    """A user's own encoder: a config key of its own that no conf/ file has."""

    def __init__(self, note: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.note = note


def test_an_encoder_of_the_users_own_named_on_the_command_line_rebuilds_with_its_own_keys(trained, tmp_path) -> None:
    """A saved `_target_` that is the user's own builds only when their command names it; then its own keys
    (which the schema cannot know) are its business, not an unknown key."""
    own = f"{__name__}.OwnEncoder"
    hostile = edited(trained, tmp_path, lambda c: _run_config(c)["encoder"].update(_target_=own, note="mine"))
    with pytest.raises(DIMError, match=f"names encoder._target_={own}, which neither"):
        load_checkpoint(str(hostile))
    saved = load_checkpoint(str(hostile), trusted=OmegaConf.create({"encoder": {"_target_": own}}))
    assert type(saved.module.encoder) is OwnEncoder and saved.module.encoder.note == "mine"
    ours = edited(trained, tmp_path, lambda c: _run_config(c)["encoder"].update(note="mine"), "ours.ckpt")
    with pytest.raises(DIMError, match=r"encoder\.note is not a key of a train config"):
        load_checkpoint(str(ours), trusted=OmegaConf.create({"encoder": {"_target_": own}}))


def _with_attribute(checkpoint: dict[str, Any], name: str, value: Any) -> None:
    state_dict = OrderedDict(checkpoint["state_dict"])
    setattr(state_dict, name, value)
    checkpoint["state_dict"] = state_dict


@pytest.mark.parametrize(
    "name, value",
    [("_metadata", ["not a mapping"]), ("_metadata", {"": {"version": "x"}}), ("note", "set on the mapping")],
)
def test_a_state_dict_with_attributes_of_the_files_choosing_is_refused(trained, tmp_path, name, value) -> None:
    """The weights-only unpickler sets any attribute an OrderedDict in the file asks for: a `_metadata` that is
    not torch's broke load_state_dict with a traceback; others shadow the mapping's methods."""
    hostile = edited(trained, tmp_path, lambda c: _with_attribute(c, name, value))
    for read in (
        lambda: load_checkpoint(str(hostile)),
        lambda: load_encoder(hostile),
        lambda: read_checkpoint(hostile),
    ):
        with pytest.raises(DIMError, match="carries attributes besides torch's _metadata"):
            read()


def test_empty_containers_are_not_taken_for_shared_ones(trained, tmp_path) -> None:
    """Pickle writes the empty tuple once and refers to it again: that is not a container reached twice."""
    read_checkpoint(edited(trained, tmp_path, lambda c: c.update(notes=[(), (), {"a": ()}])))


def test_a_global_name_of_a_long_string_is_refused_at_once(trained, tmp_path, monkeypatch) -> None:
    """torch's weights-only unpickler matches a refused GLOBAL's name with a regex that is quadratic in its
    length: 80,000 characters took minutes before it refused; the pickle is scanned for long strings first."""
    name = "a" * 80_000
    own = type(name, (), {"__module__": "hostile_module", "__qualname__": name})
    module = type(sys)("hostile_module")
    setattr(module, name, own)
    monkeypatch.setitem(sys.modules, "hostile_module", module)
    torch.save({"x": own()}, tmp_path / "long.ckpt")
    for read in (read_checkpoint, AtomicCheckpointIO().load_checkpoint):
        with pytest.raises(DIMError, match=r"holds a string of 800\d\d characters"):
            _within(5, lambda read=read: read(tmp_path / "long.ckpt"))


def _with_decoy(real: Path, decoy_of: Path, path: Path, name: str = "{top}/decoy/data.pkl") -> Path:
    """`real`'s entries, after an entry `name` (`{top}`: `real`'s archive folder) holding the (harmless)
    structure of `decoy_of`."""
    with zipfile.ZipFile(real) as source, _torch_layout_zip(path) as target:
        entries = source.infolist()
        top = entries[0].filename.split("/")[0]
        target.writestr(entries[0], source.read(entries[0]))
        target.writestr(name.format(top=top), zipfile.ZipFile(decoy_of).read("archive/data.pkl"))
        for entry in entries[1:]:
            target.writestr(entry, source.read(entry))
    return path


@pytest.mark.parametrize("name", ["elsewhere/data.pkl", "{top}/data.pkl", "{top}/DATA.PKL", "{top}/decoy/data.pkl"])
def test_an_archive_whose_structure_could_be_read_two_ways_is_refused(trained, tmp_path, name) -> None:
    """A second structure (a decoy listed first, a name twice over, a case twin: torch's reader ignores case)
    made the check read one pickle and torch another (a 100,000-character GLOBAL name: minutes). Only the names
    torch.save writes are accepted."""
    hostile = _with_decoy(trained, trained, tmp_path / "two.ckpt", name)
    for read in (read_checkpoint, AtomicCheckpointIO().load_checkpoint):
        with pytest.raises(DIMError, match=r"holds entries that torch\.save does not write"):
            read(hostile)


@pytest.mark.slow
def test_a_users_own_model_checkpoint_never_deletes_the_previous_best_named_by_the_file(make_config, tmp_path) -> None:
    """Lightning's ModelCheckpoint removes its "previous best" when it saves a better one; with the state of a
    resumed file, that path is the file's choice. Only files this process wrote are removed."""
    best = [
        "+callbacks.best._target_=pytorch_lightning.callbacks.ModelCheckpoint",
        f"+callbacks.best.dirpath={tmp_path / 'run' / 'best'}",
    ]
    train(make_config(*SHORT, *best, output_dir=tmp_path / "first"))
    victim = tmp_path / "victim.ckpt"
    victim.write_text("theirs")

    def edit(checkpoint: dict[str, Any]) -> None:
        state = next(s for key, s in checkpoint["callbacks"].items() if key.startswith("ModelCheckpoint"))
        dirpath = tmp_path / "run" / "best"  # Lightning removes only below it, lexically: `..` passes
        state.update(dirpath=str(dirpath), best_model_path=f"{dirpath}/../../victim.ckpt")

    hostile = edited(tmp_path / "first" / "checkpoints" / "last.ckpt", tmp_path, edit)
    resumed = train(
        make_config(*SHORT, *best, "trainer.max_epochs=2", f"ckpt_path={hostile}", output_dir=tmp_path / "run")
    )
    assert resumed.trainer.current_epoch == 2 and list((tmp_path / "run" / "best").glob("*.ckpt"))
    assert victim.read_text() == "theirs"
