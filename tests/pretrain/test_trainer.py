"""The pretraining trainer: data order, learning, exact resume, atomic checkpoints, events and stop, DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import plotly.io
import pytest
import torch
import torch.multiprocessing as mp
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import gpt.pretrain.state as state_module
import gpt.pretrain.trainer as trainer_module
from gpt.bpe import BytePairEncoder
from gpt.config import GPTConfig
from gpt.data.windows import open_token_file
from gpt.model import GPTModel
from gpt.pretrain.state import STATE_FILE, load_train_state, read_log, save_train_state, write_log
from gpt.pretrain.trainer import BatchSampler, PretrainConfig, log_up_to, pretrain
from gpt.training.distributed import init_distributed
from gpt.training.events import TrainingMonitor
from gpt.training.optim import param_groups
from tests.helpers import STORY as TEXT
from tests.helpers import free_port

TINY = GPTConfig(vocab_size=300, context_length=16, emb_dim=32, n_layers=2, n_heads=4, drop_rate=0.1)


@pytest.fixture(scope="module")
def tokenizer():
    return BytePairEncoder.train(TEXT, 300).to_tokenizer("test-bpe")


def tiny_cfg(**changes) -> PretrainConfig:
    base = PretrainConfig(model=TINY, max_steps=12, batch_size=4, lr=3e-3, min_lr=3e-4, warmup_steps=2,
                       eval_interval=4, eval_windows=4, checkpoint_interval=4, autocast="float32")
    return replace(base, **changes)


def losses(log: list[dict[str, float]]) -> list[float]:
    return [row["train_loss"] for row in log]


def test_batch_sampler_is_a_function_of_the_step_and_splits_across_processes():
    tokens = np.arange(1000, dtype=np.uint16)
    sampler = BatchSampler(tokens, context_length=10, batch_size=4, seed=1)
    x, y = sampler.batch(7)
    assert torch.equal(y[:, :-1], x[:, 1:]) and x.shape == (4, 10)
    x_again, _ = BatchSampler(tokens, 10, 4, seed=1).batch(7)
    assert torch.equal(x, x_again)
    halves = [sampler.batch(7, rank, 2)[0] for rank in range(2)]
    assert torch.equal(torch.cat(halves), x)
    epoch_starts = torch.cat([sampler.batch(k)[0][:, 0] for k in range(sampler.batches_per_epoch)])
    assert len(set(epoch_starts.tolist())) == len(epoch_starts)  # no window twice within an epoch


# -- training ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_loss_decreases_on_a_tiny_corpus(tmp_path, tokenizer):
    result = pretrain(tiny_cfg(max_steps=40, eval_interval=20), [TEXT], [TEXT[:400]], tokenizer, tmp_path)
    first, last = np.mean(losses(result.log)[:3]), np.mean(losses(result.log)[-3:])
    assert last < first - 1.0, (first, last)
    val = [r["val_loss"] for r in result.log if "val_loss" in r]
    assert val[-1] < val[0]
    assert result.tokens_seen == 40 * 4 * TINY.context_length


@pytest.mark.slow
def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path, tokenizer):
    cfg = tiny_cfg(grad_accum=2)  # dropout on: its RNG state must be restored too
    full = pretrain(cfg, [TEXT], [TEXT[:400]], tokenizer, tmp_path / "full")
    first = pretrain(cfg, [TEXT], [TEXT[:400]], tokenizer, tmp_path / "cut", stop_step=5)
    assert first.step == 5
    resumed = pretrain(cfg, [TEXT], [TEXT[:400]], tokenizer, tmp_path / "cut", resume=True)
    assert resumed.step == cfg.max_steps and len(resumed.log) == cfg.max_steps
    assert losses(resumed.log) == losses(full.log)
    for a, b in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [r["step"] for r in read_log(tmp_path / "cut" / "log.csv")] == list(range(1, cfg.max_steps + 1))


@pytest.mark.slow
def test_a_new_run_in_an_old_folder_encodes_its_own_text(tmp_path, tokenizer):
    """Token files are reused only by --resume: a fresh run with other text must not train on the old tokens."""
    other = TEXT[::-1]
    pretrain(tiny_cfg(max_steps=2), [TEXT], [TEXT[:400]], tokenizer, tmp_path)
    pretrain(tiny_cfg(max_steps=2), [other], [other[:400]], tokenizer, tmp_path)
    expected = tokenizer.encode(other) + [tokenizer.eot_id]
    assert np.asarray(open_token_file(tmp_path / "train.bin")).tolist() == expected


@pytest.mark.slow
def test_resume_refuses_a_run_with_other_settings(tmp_path, tokenizer):
    pretrain(tiny_cfg(max_steps=4), [TEXT], [TEXT[:400]], tokenizer, tmp_path)
    with pytest.raises(ValueError, match="other settings"):
        pretrain(tiny_cfg(max_steps=4, lr=1e-2), [TEXT], [TEXT[:400]], tokenizer, tmp_path, resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        pretrain(tiny_cfg(), [TEXT], [TEXT[:400]], tokenizer, tmp_path / "empty", resume=True)
    with pytest.raises(ValueError, match="past --max-steps 3"):
        pretrain(tiny_cfg(max_steps=3), [TEXT], [TEXT[:400]], tokenizer, tmp_path, resume=True)


@pytest.mark.slow
def test_resume_refuses_other_text(tmp_path, tokenizer):
    """Resuming on other text would train one model on two corpora and score it on the wrong held-out text."""
    pretrain(tiny_cfg(max_steps=4), [TEXT], [TEXT[:400]], tokenizer, tmp_path, stop_step=2)
    with pytest.raises(ValueError, match="trained on other text"):
        pretrain(tiny_cfg(max_steps=4), [TEXT[::-1]], [TEXT[:400]], tokenizer, tmp_path, resume=True)
    with pytest.raises(ValueError, match="trained on other text"):
        pretrain(tiny_cfg(max_steps=4), [TEXT], [TEXT[:300]], tokenizer, tmp_path, resume=True)
    assert pretrain(tiny_cfg(max_steps=4), [TEXT], [TEXT[:400]], tokenizer, tmp_path, resume=True).step == 4


def flipped(data: bytes, count: int = 2000) -> bytes:
    """The bytes with the last `count` inverted: inside the tensors, so the file still parses."""
    return data[:-count] + bytes(b ^ 0xFF for b in data[-count:])


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_a_damaged_training_state_is_a_clear_message(tmp_path, tokenizer, damage):
    pretrain(tiny_cfg(max_steps=4), [TEXT], [TEXT[:400]], tokenizer, tmp_path, stop_step=2)
    state = tmp_path / "train_state.safetensors"
    data = state.read_bytes()
    state.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x08" + bytes(range(256)) * 4,
                       "flip": flipped(data)}[damage])
    with pytest.raises(ValueError, match="train_state.safetensors in .* is damaged and cannot be resumed"):
        pretrain(tiny_cfg(max_steps=4), [TEXT], [TEXT[:400]], tokenizer, tmp_path, resume=True)


@pytest.mark.slow
def test_a_resumed_log_keeps_its_counts_whole(tmp_path, tokenizer):
    pretrain(tiny_cfg(max_steps=4), [TEXT], [TEXT[:400]], tokenizer, tmp_path, stop_step=2)
    pretrain(tiny_cfg(max_steps=4), [TEXT], [TEXT[:400]], tokenizer, tmp_path, resume=True)
    rows = (tmp_path / "log.csv").read_text().splitlines()[1:]
    assert [row.split(",")[:2] for row in rows] == [[str(s), str(s * 4 * TINY.context_length)] for s in range(1, 5)]


@pytest.mark.slow
def test_resume_may_lengthen_or_shorten_a_run(tmp_path, tokenizer):
    """Only max_steps may change: the run goes on to the new end, its learning rate on the new cosine."""
    pretrain(tiny_cfg(max_steps=8), [TEXT], [TEXT[:400]], tokenizer, tmp_path, stop_step=2)
    result = pretrain(tiny_cfg(max_steps=5), [TEXT], [TEXT[:400]], tokenizer, tmp_path, resume=True)
    assert result.step == 5 and [row["step"] for row in result.log][-1] == 5
    assert result.log[-1]["lr"] == pytest.approx(tiny_cfg(max_steps=5).learning_rate(4))  # the lr of the 5th step


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_save_leaves_the_previous_checkpoint_intact(tmp_path, tokenizer, monkeypatch):
    cfg = tiny_cfg(max_steps=8)
    pretrain(cfg, [TEXT], [TEXT[:400]], tokenizer, tmp_path, stop_step=4)
    path = tmp_path / STATE_FILE
    before = path.read_bytes()

    def killed_mid_write(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")  # the process dies here
        raise KeyboardInterrupt

    monkeypatch.setattr(state_module, "save_file", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, [TEXT], [TEXT[:400]], tokenizer, tmp_path, resume=True)
    assert path.read_bytes() == before
    model = GPTModel(cfg.model)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay))
    meta, rng = load_train_state(path, model, optimizer)
    assert meta["step"] == 4 and "rng.cpu.0" in rng and len(optimizer.state) == len(list(model.parameters()))


@pytest.mark.slow
def test_checkpoint_round_trips_optimizer_state(tmp_path, tokenizer):
    result = pretrain(tiny_cfg(max_steps=3), [TEXT], [TEXT[:400]], tokenizer, tmp_path)
    model = GPTModel(TINY)
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), fused=True)
    meta, _ = load_train_state(tmp_path / STATE_FILE, model, optimizer)
    assert meta["step"] == 3 and meta["tokens_seen"] == result.tokens_seen
    for a, b in zip(model.parameters(), result.model.parameters(), strict=True):
        assert torch.equal(a, b)
        assert optimizer.state[a]["exp_avg"].abs().sum() > 0
    path = tmp_path / "again.safetensors"
    save_train_state(path, model, optimizer, tiny_cfg(max_steps=3).to_dict(), 3, 1, 0.0, [torch.get_rng_state()])
    assert path.is_file() and sorted(p.name for p in tmp_path.glob(".*tmp")) == []


@pytest.mark.slow
def test_log_and_figure_are_written(tmp_path, tokenizer):
    pretrain(tiny_cfg(max_steps=8), [TEXT], [TEXT[:400]], tokenizer, tmp_path)
    rows = read_log(tmp_path / "log.csv")
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert rows[-1]["tokens_seen"] == 8 * 4 * 16 and all(r["tokens_per_s"] > 0 for r in rows)
    assert [r["step"] for r in rows if "val_loss" in r] == [4, 8]
    fig = plotly.io.from_json((tmp_path / "loss.json").read_text())
    assert [t.name for t in fig.data] == ["train", "validation (held out)"]
    assert list(fig.data[1].x) == [4 * 64, 8 * 64]
    assert "plotly" in (tmp_path / "loss.html").read_text()


def saved_state(path: Path, bfloat16: bool = False) -> tuple[GPTModel, torch.optim.Optimizer]:
    """A state as a checkpoint writes it, after one optimizer step (so AdamW has its moments), in a moment."""
    torch.manual_seed(0)
    model = GPTModel(TINY).to(torch.bfloat16 if bfloat16 else torch.float32)
    optimizer = torch.optim.AdamW(param_groups(model, 0.1))
    model(torch.randint(0, 300, (2, 8))).float().mean().backward()
    optimizer.step()
    save_train_state(path, model, optimizer, tiny_cfg().to_dict(), 1, 64, 0.5, [torch.get_rng_state()])
    return model, optimizer


@pytest.mark.parametrize("bfloat16", [False, True])
def test_flipped_bytes_in_a_training_state_are_refused_not_resumed_into_nans(tmp_path, bfloat16):
    path = tmp_path / STATE_FILE
    model, optimizer = saved_state(path, bfloat16)
    meta, _ = load_train_state(path, model, optimizer)
    assert meta["step"] == 1
    path.write_bytes(flipped(path.read_bytes()))
    with pytest.raises(ValueError, match=f"^{STATE_FILE} in {tmp_path.name} is damaged and cannot be resumed "
                                         r"\(its contents do not match the sha256 saved with them\); start"):
        load_train_state(path, model, optimizer)


def test_a_training_state_from_before_the_digest_still_resumes(tmp_path):
    path = tmp_path / STATE_FILE
    model, optimizer = saved_state(path)
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    save_file(load_file(str(path)), str(path), metadata={"train_state": header["train_state"]})  # no sha256
    assert load_train_state(path, model, optimizer)[0]["tokens_seen"] == 64


def rows(*steps: int) -> list[dict[str, float]]:
    return [{"step": s, "tokens_seen": 64 * s, "train_loss": 5.0} for s in steps]


@pytest.mark.parametrize("log, problem", [
    (None, "log.csv in {} is missing, so the run cannot be resumed (its state is at step 4)"),
    (rows(), "log.csv in {} has no rows, but the state is at step 4"),
    (rows(1, 2), "log.csv in {} stops at step 2, but the state is at step 4: it must have one row per step"),
    (rows(1, 2, 4), "log.csv in {} has 3 rows up to step 4, but the state is at step 4"),
    (rows(1, 2, 2, 3, 4), "log.csv in {} has 5 rows up to step 4"),
])
def test_a_log_missing_or_short_of_the_state_is_refused(tmp_path, log, problem):
    if log is not None:
        write_log(tmp_path / "log.csv", log)
    with pytest.raises(ValueError) as err:
        log_up_to(tmp_path / "log.csv", 4)
    message = str(err.value)
    assert message.startswith(problem.format(tmp_path.name)) and "\n" not in message
    assert message.endswith("restore log.csv from a copy of the run, or start the run again in a new folder")


def test_a_log_ahead_of_the_state_loses_the_rows_past_it(tmp_path):
    """The log is written before the state: a kill in between leaves rows the state never reached."""
    write_log(tmp_path / "log.csv", rows(1, 2, 3, 4, 5, 6))
    assert [r["step"] for r in log_up_to(tmp_path / "log.csv", 4)] == [1, 2, 3, 4]


@pytest.mark.slow
def test_a_deleted_log_is_refused_at_resume_and_a_restored_one_resumes(tmp_path, tokenizer):
    pretrain(tiny_cfg(max_steps=8), [TEXT], [TEXT[:400]], tokenizer, tmp_path, stop_step=6)
    kept = (tmp_path / "log.csv").read_bytes()
    (tmp_path / "log.csv").unlink()
    with pytest.raises(ValueError, match="log.csv in .* is missing, so the run cannot be resumed"):
        pretrain(tiny_cfg(max_steps=8), [TEXT], [TEXT[:400]], tokenizer, tmp_path, resume=True)
    (tmp_path / "log.csv").write_bytes(kept)
    assert len(pretrain(tiny_cfg(max_steps=8), [TEXT], [TEXT[:400]], tokenizer, tmp_path, resume=True).log) == 8


@pytest.mark.slow
def test_a_resume_removes_what_a_killed_run_left_half_written(tmp_path, tokenizer):
    """kill -9 mid-write leaves `.NAME.<pid>.tmp`; a live process's temporary (another rank's) is kept."""
    pretrain(tiny_cfg(max_steps=4), [TEXT], [TEXT[:400]], tokenizer, tmp_path, stop_step=2)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = [tmp_path / f".train_state.safetensors.{gone.pid}.tmp", tmp_path / f".log.csv.{gone.pid}.tmp"]
    live = tmp_path / f".log.csv.{os.getppid()}.tmp"
    for path in [*stale, live]:
        path.write_bytes(b"half a file")
    assert pretrain(tiny_cfg(max_steps=4), [TEXT], [TEXT[:400]], tokenizer, tmp_path, resume=True).step == 4
    assert [p.name for p in tmp_path.glob(".*.tmp")] == [live.name]


# -- events and stop requests ------------------------------------------------------------------
@pytest.mark.slow
def test_events_report_steps_evaluations_samples_and_checkpoints(tmp_path, tokenizer):
    events = []
    result = pretrain(tiny_cfg(max_steps=8), [TEXT], [TEXT[:400]], tokenizer, tmp_path,
                      monitor=TrainingMonitor(events.append))
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("start") == 1
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == list(range(1, 9))
    assert [e.metrics["train_loss"] for e in steps] == losses(result.log)
    assert [e.tokens_seen for e in steps] == [r["tokens_seen"] for r in result.log]
    evals = [e for e in events if e.kind == "eval"]
    assert [e.step for e in evals] == [4, 8]
    assert [e.metrics["val_loss"] for e in evals] == [r["val_loss"] for r in result.log if "val_loss" in r]
    samples = [e for e in events if e.kind == "sample"]
    assert [e.step for e in samples] == [4, 8] and all(e.text.startswith(tiny_cfg().sample_prompt) for e in samples)
    assert [e.step for e in events if e.kind == "checkpoint"] == [4, 8]


@pytest.mark.slow
@pytest.mark.parametrize("fit_to_time", [True, False])
def test_a_run_fitted_to_time_ends_its_schedule_sooner_when_the_machine_slows(tmp_path, tokenizer, monkeypatch,
                                                                              fit_to_time):
    """A clock that the steps move: 1 s each for 8 steps, then 3 s. Fitted to time, the schedule is cut at the first
    check that sees the slower pace (step 12: 12 + 0.9 * 40 s left / 3 s) and the run ends its decay inside the
    limit; not fitted, the clock stops it part way, its learning rate still high."""
    clock = [0.0]
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: clock[0])
    step_once = trainer_module.train_step

    def timed_step(run):
        row = step_once(run)
        clock[0] += 1.0 if run.step <= 8 else 3.0
        return row

    monkeypatch.setattr(trainer_module, "train_step", timed_step)
    events = []
    cfg = tiny_cfg(max_steps=40, eval_interval=4, checkpoint_interval=40)
    result = pretrain(cfg, [TEXT], [TEXT[:400]], tokenizer, tmp_path, time_limit_s=60,
                      monitor=TrainingMonitor(events.append), fit_to_time=fit_to_time)
    refits = [e for e in events if e.kind == "refit"]
    if fit_to_time:
        assert [(e.step, e.total_steps) for e in refits] == [(12, 24)] and "step 24" in refits[0].text
        assert result.step == result.cfg.max_steps == 24 and events[-1].kind == "done"
        assert result.log[-1]["lr"] == pytest.approx(cfg.min_lr, rel=0.05)
    else:
        assert not refits and result.cfg.max_steps == 40 and result.step == 26 and events[-1].kind == "stopped"
        assert result.log[-1]["lr"] > 3 * cfg.min_lr


@pytest.mark.slow
def test_a_stop_request_writes_a_checkpoint_and_resume_continues_the_same_run(tmp_path, tokenizer):
    cfg = tiny_cfg()
    full = pretrain(cfg, [TEXT], [TEXT[:400]], tokenizer, tmp_path / "full")
    events = []
    monitor = TrainingMonitor(events.append)

    def stop_at_five(event):
        if event.kind == "step" and event.step == 5:
            monitor.request_stop()  # as the app's Stop button does, from another thread

    monitor.listeners.append(stop_at_five)
    stopped = pretrain(cfg, [TEXT], [TEXT[:400]], tokenizer, tmp_path / "cut", monitor=monitor)
    assert stopped.step == 5 and events[-1].kind == "stopped" and "stop requested" in events[-1].text
    assert [e.step for e in events if e.kind == "checkpoint"] == [4, 5]
    model = GPTModel(cfg.model)
    meta, _ = load_train_state(tmp_path / "cut" / STATE_FILE, model, torch.optim.AdamW(param_groups(model, 0.1)))
    assert meta["step"] == 5
    resumed = pretrain(cfg, [TEXT], [TEXT[:400]], tokenizer, tmp_path / "cut", resume=True)
    assert losses(resumed.log) == losses(full.log)


@pytest.mark.slow
def test_each_training_has_its_own_stop_flag_and_listeners(tmp_path, tokenizer):
    stopped, running = TrainingMonitor(), TrainingMonitor()
    stopped.request_stop()
    seen = []
    running.listeners.append(seen.append)
    assert pretrain(tiny_cfg(max_steps=3), [TEXT], [TEXT[:400]], tokenizer, tmp_path / "a", monitor=stopped).step == 0
    assert pretrain(tiny_cfg(max_steps=3), [TEXT], [TEXT[:400]], tokenizer, tmp_path / "b", monitor=running).step == 3
    assert seen[-1].kind == "done" and not running.stop_requested


@pytest.mark.slow
def test_the_log_is_written_before_the_state_it_belongs_to(tmp_path, tokenizer, monkeypatch):
    """A kill between the two writes must not lose log rows: the log runs ahead and resume drops the extra."""
    order = []
    monkeypatch.setattr(trainer_module, "write_log", lambda *a: (order.append("log"), write_log(*a)))
    monkeypatch.setattr(trainer_module, "save_train_state", lambda *a: (order.append("state"), save_train_state(*a)))
    pretrain(tiny_cfg(max_steps=4), [TEXT], [TEXT[:400]], tokenizer, tmp_path)
    assert order == ["log", "state"]


# -- distributed -------------------------------------------------------------------------------
def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str, cfg: PretrainConfig,
                tokenizer_ranks: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    from gpt.tokenizer import Tokenizer

    ddp = init_distributed(torch.device("cpu"))
    pretrain(cfg, [TEXT], [TEXT[:400]], Tokenizer("test-bpe", tokenizer_ranks), out_dir, ddp)
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_processes_give_the_loss_of_one_with_the_same_global_batch(tmp_path, tokenizer):
    cfg = tiny_cfg(max_steps=6, model=replace(TINY, drop_rate=0.0), grad_accum=2)
    single = pretrain(cfg, [TEXT], [TEXT[:400]], tokenizer, tmp_path / "one")
    mp.start_processes(_ddp_worker, args=(2, free_port(), str(tmp_path / "two"), cfg, tokenizer.ranks),
                       nprocs=2, join=True, start_method="spawn")
    two = read_log(tmp_path / "two" / "log.csv")
    np.testing.assert_allclose([r["train_loss"] for r in two], losses(single.log), rtol=1e-5)
    assert losses(single.log)[-1] < losses(single.log)[0]
    model = GPTModel(cfg.model)
    load_train_state(tmp_path / "two" / STATE_FILE, model,
                     torch.optim.AdamW(param_groups(model, cfg.weight_decay)))
    for a, b in zip(model.parameters(), single.model.parameters(), strict=True):
        # all-reduce sums the gradients in another order; Adam divides by a tiny second moment, so a float's
        # last bits can move a weight by ~1e-5 (seen once in 4,096 weights under load)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=5e-5)
