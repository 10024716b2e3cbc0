"""A pretraining run as one zip: what a user downloads from the app and uploads again later.

The zip holds the exported model folder (with a chat model's held-out scores, `eval.json`), the log
and the loss figure's data, under fixed names; never the training state or the token files (large,
and only a resume needs them). Reading one is reading a file from a stranger (`gpt.archive`): it is
moved into place only once its checkpoint has loaded, every file checked against the checksums its
config must carry (a folder with them removed would load anything).
"""

from __future__ import annotations

from pathlib import Path

from gpt.archive import ArchiveError, ArchiveLayout, read_archive, write_archive
from gpt.checkpoint import (
    CARD_FILE,
    CONFIG_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_checkpoint,
    read_config,
)
from gpt.pretrain.state import LOG_FILE

MODEL_DIR = "model"
MODEL_EVAL = f"{MODEL_DIR}/eval.json"  # a chat model's held-out scores (gpt.instruct.evaluate.MODEL_EVAL_FILE)
RUN_ARCHIVE = ArchiveLayout(
    "run archive",
    members=(f"{MODEL_DIR}/{CONFIG_FILE}", f"{MODEL_DIR}/{WEIGHTS_FILE}", f"{MODEL_DIR}/{TOKENIZER_FILE}",
             f"{MODEL_DIR}/metrics.json", MODEL_EVAL, LOG_FILE, "loss.json", CARD_FILE),
    required=(f"{MODEL_DIR}/{CONFIG_FILE}", f"{MODEL_DIR}/{WEIGHTS_FILE}"),
)

__all__ = ["RUN_ARCHIVE", "ArchiveError", "read_run_archive", "write_run_archive"]


def write_run_archive(run_dir: str | Path, dest: str | Path) -> Path:
    """Zip the run's model folder, log, loss figure data, model card and scores (when present) into `dest`."""
    return write_archive(run_dir, dest, RUN_ARCHIVE)


def read_run_archive(archive: str | Path, dest_dir: str | Path, max_bytes: int = 64 * 2**20) -> Path:
    """Unpack a run archive into `dest_dir` (new or empty) and return its checkpoint folder, `dest_dir/model`.

    Raises `ArchiveError` (one line) for anything but an archive of a loadable, verified checkpoint within
    `max_bytes`.
    """
    def check(folder: Path) -> None:
        """Load the checkpoint, refusing first a config whose model would dwarf the archive."""
        model_dir = folder / MODEL_DIR
        try:
            cfg = read_config(model_dir)["model"]
            if cfg.n_elements() > max_bytes:
                raise ArchiveError(f"{MODEL_DIR}/{CONFIG_FILE} describes a model of {cfg.n_elements():,} numbers, "
                                   f"more than an archive of {max_bytes:,} bytes can hold")
            load_checkpoint(model_dir, require_checksums=True)
        except CheckpointError as err:
            raise ArchiveError(f"the archive's model does not load: {err}".replace(str(model_dir), MODEL_DIR)) from err

    return read_archive(archive, dest_dir, RUN_ARCHIVE, check, max_bytes) / MODEL_DIR
