"""Run archives: what goes in, a round trip to an equal model, and every refusal leaving nothing behind."""

from __future__ import annotations

import json
import os
import stat
import struct
import zipfile
from pathlib import Path

import pytest
import torch

import gpt.archive as archive_module
from gpt.bpe import BytePairEncoder
from gpt.checkpoint import load_checkpoint, save_checkpoint
from gpt.config import GPTConfig
from gpt.kernels import accelerate
from gpt.model import GPTModel
from gpt.pretrain.archive import ArchiveError, read_run_archive, write_run_archive
from gpt.pretrain.trainer import PretrainConfig, export_model, pretrain
from tests.helpers import STORY as TEXT

TINY = GPTConfig(vocab_size=300, context_length=16, emb_dim=32, n_layers=2, n_heads=4)
MODEL_FILES = {"model/model.safetensors", "model/config.json", "model/tokenizer.tiktoken", "model/metrics.json"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real run folder: a few steps of `pretrain`, then `export_model`, and a model card beside them."""
    out = tmp_path_factory.mktemp("run")
    tokenizer = BytePairEncoder.train(TEXT, 300).to_tokenizer("test-bpe")
    cfg = PretrainConfig(model=TINY, max_steps=3, batch_size=2, warmup_steps=1, eval_interval=3, eval_windows=2,
                         checkpoint_interval=3, autocast="float32")
    result = pretrain(cfg, [TEXT], [TEXT[:400]], tokenizer, out)
    export_model(result, cfg, tokenizer, [TEXT[:400]], out, "story")
    (out / "MODEL_CARD.md").write_text("# A test run\n")
    return out


@pytest.fixture(scope="module")
def saved_archive(run_dir, tmp_path_factory) -> Path:
    return write_run_archive(run_dir, tmp_path_factory.mktemp("zip") / "run.zip")


@pytest.fixture(scope="module")
def checkpoint_files(run_dir) -> dict[str, bytes]:
    return {f"model/{p.name}": p.read_bytes() for p in (run_dir / "model").iterdir()}


def make_zip(path: Path, members: dict[str | zipfile.ZipInfo, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def assert_refused(archive: Path, tmp_path: Path, match: str, **kwargs) -> None:
    """Refused with `match`, and nothing written: not dest_dir, not beside it, not anywhere under tmp_path."""
    (tmp_path / "uploads").mkdir(exist_ok=True)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ArchiveError, match=match) as err:
        read_run_archive(archive, tmp_path / "uploads" / "run", **kwargs)
    assert "\n" not in str(err.value)
    assert sorted(tmp_path.rglob("*")) == before
    assert not (tmp_path / "uploads" / "run").exists()


# -- writing and the round trip ----------------------------------------------------------------
def test_the_archive_holds_the_model_log_and_figure_data_but_no_training_files(run_dir, saved_archive) -> None:
    assert {"train_state.safetensors", "train.bin", "val.bin", "loss.html"} <= {p.name for p in run_dir.iterdir()}
    with zipfile.ZipFile(saved_archive) as zf:
        names = zf.namelist()
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in zf.infolist())
    assert set(names) == MODEL_FILES | {"log.csv", "loss.json", "MODEL_CARD.md"} and len(names) == len(set(names))
    assert not list(saved_archive.parent.glob("*.tmp"))


def test_round_trip_gives_the_same_model(run_dir, saved_archive, tmp_path) -> None:
    model_dir = read_run_archive(saved_archive, tmp_path / "uploads" / "run")
    assert model_dir == tmp_path / "uploads" / "run" / "model"
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == ["run"]  # no temporary folder left
    assert (model_dir.parent / "log.csv").read_bytes() == (run_dir / "log.csv").read_bytes()
    original, restored = load_checkpoint(run_dir / "model"), load_checkpoint(model_dir)
    assert restored.meta == original.meta and restored.tokenizer.ranks == original.tokenizer.ranks
    idx = torch.randint(0, TINY.vocab_size, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(restored.model(idx), original.model(idx), rtol=0, atol=0)


def test_an_empty_destination_folder_is_accepted(saved_archive, tmp_path) -> None:
    (tmp_path / "run").mkdir()
    assert (read_run_archive(saved_archive, tmp_path / "run") / "config.json").is_file()


def test_a_sinusoidal_run_without_a_model_card_round_trips(tmp_path) -> None:
    run = tmp_path / "run"
    tokenizer = BytePairEncoder.train(TEXT, 300).to_tokenizer("test-bpe")
    model = accelerate(GPTModel(GPTConfig.preset("tiny", vocab_size=300, positions="sinusoidal"))).eval()
    save_checkpoint(model, run / "model", tokenizer)  # loaded back with the fast modules: compared like for like
    (run / "log.csv").write_text("step,train_loss\n1,5.0\n")
    path = write_run_archive(run, tmp_path / "run.zip")
    with zipfile.ZipFile(path) as zf:
        assert set(zf.namelist()) == {"model/model.safetensors", "model/config.json", "model/tokenizer.tiktoken",
                                      "log.csv"}
    restored = load_checkpoint(read_run_archive(path, tmp_path / "back")).model
    idx = torch.randint(0, 300, (1, 20))
    with torch.no_grad():
        torch.testing.assert_close(restored(idx), model(idx), rtol=0, atol=0)


def test_writing_needs_an_exported_model(tmp_path) -> None:
    (tmp_path / "log.csv").write_text("step\n")
    with pytest.raises(FileNotFoundError, match="missing: not a complete folder for a run archive"):
        write_run_archive(tmp_path, tmp_path / "run.zip")
    assert not (tmp_path / "run.zip").exists()


# -- refusals ----------------------------------------------------------------------------------
def test_not_a_zip(tmp_path) -> None:
    path = tmp_path / "run.zip"
    path.write_bytes(b"this is not a zip file at all")
    assert_refused(path, tmp_path, "not a zip file")


def test_a_non_empty_destination(saved_archive, tmp_path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mine.txt").write_text("keep me")
    with pytest.raises(ArchiveError, match="already exists"):
        read_run_archive(saved_archive, tmp_path / "run")
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["mine.txt"]


@pytest.mark.parametrize("name", ["../evil", "/abs", "model/../../evil", "model\\config.json", "C:evil",
                                  "C:/evil"])
def test_names_that_could_land_outside_the_folder(tmp_path, checkpoint_files, name: str) -> None:
    path = make_zip(tmp_path / "run.zip", {**checkpoint_files, name: b"gotcha"})
    with zipfile.ZipFile(path) as zf:
        assert name in zf.namelist()  # zipfile kept the name as given: the reader must refuse it
    assert_refused(path, tmp_path, "unsafe file name")
    assert not (tmp_path / "evil").exists() and not Path("/abs").exists()


def test_a_symbolic_link(tmp_path, checkpoint_files) -> None:
    link = zipfile.ZipInfo("log.csv")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = make_zip(tmp_path / "run.zip", {**checkpoint_files, link: b"/etc/passwd"})
    assert_refused(path, tmp_path, "symbolic link")


def test_a_file_outside_the_allowed_set(tmp_path, checkpoint_files) -> None:
    path = make_zip(tmp_path / "run.zip", {**checkpoint_files, "train_state.safetensors": b"state"})
    assert_refused(path, tmp_path, "unexpected file 'train_state.safetensors'")


def test_a_duplicate_name(tmp_path, checkpoint_files) -> None:
    path = make_zip(tmp_path / "run.zip", checkpoint_files)
    with zipfile.ZipFile(path, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("model/config.json", b"{}")
    assert_refused(path, tmp_path, "appears twice")


def test_too_many_files(tmp_path, checkpoint_files) -> None:
    path = make_zip(tmp_path / "run.zip", {**checkpoint_files, **{f"extra{i}.txt": b"x" for i in range(13)}})
    assert_refused(path, tmp_path, "17 files in the archive, more than 16")


@pytest.mark.parametrize("missing", ["model/config.json", "model/model.safetensors"])
def test_a_missing_checkpoint_file(tmp_path, checkpoint_files, missing: str) -> None:
    members = {name: data for name, data in checkpoint_files.items() if name != missing}
    assert_refused(make_zip(tmp_path / "run.zip", members), tmp_path, f"{missing} missing")


def test_a_zip_bomb(tmp_path) -> None:
    """100 MB of zeros deflate to about 100 KB: refused from the listing, nothing inflated."""
    path = tmp_path / "run.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model/config.json", b"{}")
        with zf.open("model/model.safetensors", "w") as f:
            for _ in range(100):
                f.write(bytes(2**20))
    assert path.stat().st_size < 2**20
    assert_refused(path, tmp_path, "inflates 1[0-9]{3} times .*zip bomb")


def test_more_bytes_than_allowed(tmp_path, checkpoint_files) -> None:
    members = {**checkpoint_files, "model/model.safetensors": os.urandom(200_000)}
    assert_refused(make_zip(tmp_path / "run.zip", members), tmp_path, "more than the 100,000 allowed",
                   max_bytes=100_000)


def test_bytes_are_counted_as_read_whatever_the_listing_says(tmp_path, checkpoint_files, monkeypatch) -> None:
    """With the listing's sizes trusted blindly (here: not checked at all), reading still stops at the limit."""
    monkeypatch.setattr(archive_module, "_check_listing", lambda infos, layout, max_bytes: None)
    members = {**checkpoint_files, "model/model.safetensors": os.urandom(3 * archive_module.CHUNK)}
    assert_refused(make_zip(tmp_path / "run.zip", members), tmp_path, "more than the 2,097,152 bytes allowed",
                   max_bytes=2 * archive_module.CHUNK)


def central_entry(data: bytes, name: str) -> int:
    """Offset of `name`'s entry in a zip's central directory (signature PK\\1\\2, name at +46, its length at +28)."""
    start = data.index(b"PK\x01\x02")
    while data[start + 46 : start + 46 + struct.unpack_from("<H", data, start + 28)[0]] != name.encode():
        start = data.index(b"PK\x01\x02", start + 4)
    return start


def test_a_listing_that_understates_a_size(tmp_path, checkpoint_files) -> None:
    """The central directory says 10 bytes; the data is far more. Reading stops short and the CRC fails."""
    path = make_zip(tmp_path / "run.zip", {**checkpoint_files, "log.csv": bytes(range(256)) * 400})
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, central_entry(data, "log.csv") + 24, 10)  # its uncompressed size
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("log.csv").file_size == 10
    assert_refused(path, tmp_path, "damaged")


def test_random_bytes_named_model_safetensors(tmp_path, checkpoint_files) -> None:
    members = {**checkpoint_files, "model/model.safetensors": os.urandom(5000)}
    assert_refused(make_zip(tmp_path / "run.zip", members), tmp_path,
                   "model does not load: model/model.safetensors: the file is damaged")


def test_a_config_that_points_the_tokenizer_elsewhere(tmp_path, checkpoint_files) -> None:
    config = json.loads(checkpoint_files["model/config.json"])
    config["tokenizer"] = "../../../etc/passwd"
    members = {**checkpoint_files, "model/config.json": json.dumps(config).encode()}
    assert_refused(make_zip(tmp_path / "run.zip", members), tmp_path, "tokenizer must be 'gpt2'")


def test_a_config_describing_a_huge_model(tmp_path, checkpoint_files) -> None:
    """Building the model the config describes would take the memory: refused before it is built."""
    config = json.loads(checkpoint_files["model/config.json"])
    config["model"] |= {"emb_dim": 1600, "n_heads": 25, "n_layers": 48}  # gpt2-xl's: past the archive's limit
    members = {**checkpoint_files, "model/config.json": json.dumps(config).encode()}
    assert_refused(make_zip(tmp_path / "run.zip", members), tmp_path, "describes a model of")


def test_an_encrypted_member(tmp_path, checkpoint_files) -> None:
    path = make_zip(tmp_path / "run.zip", checkpoint_files)
    data = bytearray(path.read_bytes())
    flags = central_entry(data, "model/config.json") + 8  # general purpose bit flag; bit 0: encrypted
    data[flags] |= 0x1
    path.write_bytes(bytes(data))
    assert_refused(path, tmp_path, "'model/config.json' in the archive is encrypted")


# -- verified: every file against the checksums the config must carry ---------------------------------------
@pytest.fixture(scope="module")
def small_files(tmp_path_factory) -> dict[str, bytes]:
    """A saved (untrained) checkpoint's files under the archive's names, and another model's config beside them."""
    root = tmp_path_factory.mktemp("small")
    tokenizer = BytePairEncoder.train(TEXT, 300).to_tokenizer("test-bpe")
    for seed, name in ((0, "model"), (1, "other")):
        torch.manual_seed(seed)
        save_checkpoint(GPTModel(TINY), root / name, tokenizer)
    files = {f"model/{p.name}": p.read_bytes() for p in (root / "model").iterdir()}
    return files | {"other config": (root / "other" / "config.json").read_bytes()}


def forged(files: dict[str, bytes], how: str) -> dict[str, bytes]:
    """The archive's members after one forgery: what a stranger can send."""
    members = {k: v for k, v in files.items() if k.startswith("model/")}
    config = json.loads(members["model/config.json"])
    if how == "checksums removed":
        del config["sha256"]
    elif how == "checksums malformed":
        config["sha256"] = "abc"
    elif how == "weights flipped":
        weights = bytearray(members["model/model.safetensors"])
        weights[-2000:] = bytes(b ^ 0xFF for b in weights[-2000:])
        members["model/model.safetensors"] = bytes(weights)
    elif how == "tokenizer cut short":
        lines = members["model/tokenizer.tiktoken"].splitlines(keepends=True)
        members["model/tokenizer.tiktoken"] = b"".join(lines[: len(lines) // 2])
    elif how == "config of another model":
        config = json.loads(files["other config"])
    return members | {"model/config.json": json.dumps(config).encode()}


@pytest.mark.parametrize("how, message", [
    ("checksums removed", "model/config.json records no sha256 checksums, so its files cannot be verified"),
    ("checksums malformed", "not a valid model config .sha256 must map file names to sha256 digests"),
    ("weights flipped", "model/model.safetensors: the file is damaged or was changed after saving"),
    ("tokenizer cut short", "model/tokenizer.tiktoken: the file is damaged or was changed after saving"),
    ("config of another model", "model/model.safetensors: the file is damaged or was changed after saving"),
])
def test_a_forged_or_damaged_model_is_refused(small_files, tmp_path, how: str, message: str) -> None:
    assert_refused(make_zip(tmp_path / "run.zip", forged(small_files, how)), tmp_path, message)


def test_the_unforged_small_model_is_accepted(small_files, tmp_path) -> None:
    members = {k: v for k, v in small_files.items() if k.startswith("model/")}
    assert load_checkpoint(read_run_archive(make_zip(tmp_path / "run.zip", members), tmp_path / "run")).model
