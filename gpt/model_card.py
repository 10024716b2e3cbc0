"""How a model was made, read from the files beside it: its card, training log, baselines and evaluations.

`python -m gpt pretrain` and the app's Train tab write MODEL_CARD.md, log.csv and loss.json (into the
run folder around `model/`, or copied beside the weights for the shipped models) and metrics.json
beside the weights; an instruction finetune adds eval.json, a classifier test_metrics.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt.checkpoint import CARD_FILE, CONFIG_FILE, read_config
from gpt.classify.classifier import METRICS_FILE as TEST_METRICS_FILE
from gpt.classify.classifier import ClassifierMetrics, parse_test_metrics
from gpt.instruct.evaluate import load_model_eval
from gpt.pretrain.state import LOG_FILE, read_log

LOSS_FIGURE_FILE = "loss.json"  # the plotly figure `gpt.pretrain.state.write_figure` saves
METRICS_JSON = "metrics.json"  # held-out loss, bits per byte and the baselines, from `export_model`
MAX_FILE_BYTES = 20_000_000  # a log of a very long run; anything larger is not read


@dataclass(frozen=True)
class ModelHistory:
    card: str | None = None  # MODEL_CARD.md: data, command, steps, time
    log: list[dict[str, float]] = field(default_factory=list)  # log.csv: one row per step
    loss_figure_json: str | None = None  # loss.json, when there is no log to draw from
    metrics: dict[str, Any] | None = None  # metrics.json: held-out figures and the baselines they beat
    evaluation: dict[str, Any] | None = None  # eval.json of these very weights (a chat model's held-out scores)
    test_metrics: dict[str, ClassifierMetrics] | None = None  # test_metrics.json (a classifier's)
    meta: dict[str, Any] = field(default_factory=dict)  # config.json's meta: a finetune's losses per epoch


def _find(folders: list[Path], name: str) -> Path | None:
    """The first folder's `name` that is a file of a readable size."""
    return next((f / name for f in folders if (f / name).is_file() and (f / name).stat().st_size <= MAX_FILE_BYTES),
                None)


def read_history(folder: str | Path, run_folder: str | Path | None = None) -> ModelHistory:
    """What `folder` (a checkpoint) and `run_folder` (the Train-tab run around it, if any) say about the model."""
    folder = Path(folder)
    folders = [folder] + ([Path(run_folder)] if run_folder is not None else [])
    found = {name: _find(folders, name) for name in (CARD_FILE, LOG_FILE, LOSS_FIGURE_FILE, METRICS_JSON,
                                                     TEST_METRICS_FILE)}
    read = {name: path.read_text(encoding="utf-8") for name, path in found.items() if path is not None}
    return ModelHistory(
        card=read.get(CARD_FILE),
        log=read_log(found[LOG_FILE]) if found[LOG_FILE] else [],
        loss_figure_json=read.get(LOSS_FIGURE_FILE),
        metrics=json.loads(read[METRICS_JSON]) if METRICS_JSON in read else None,
        evaluation=load_model_eval(folder),
        test_metrics=parse_test_metrics(read[TEST_METRICS_FILE]) if TEST_METRICS_FILE in read else None,
        meta=read_config(folder).get("meta", {}) if (folder / CONFIG_FILE).is_file() else {},
    )
