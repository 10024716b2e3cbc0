"""The Train tab's event functions and the job runner: real trainings of tiny models, in child processes."""

from __future__ import annotations

import zipfile
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest

from gpt.data.corpus import MODERN_TITLES
from gpt.data.windows import SlidingWindowDataset
from tests.helpers import STORY
from tests.ui.helpers import choices, session
from ui import generate_tab, train_tab, training_panel
from ui.jobs import JobError, JobRunner, TrainLimits
from ui.registry import RUN_PREFIX, ModelRegistry

# A tiny model on the pasted story: a training takes seconds.
TINY_RUN = dict(corpora=[], files=None, tokenizer_kind="bpe", vocab_size=300, preset="custom", n_layers=2,
                n_heads=4, emb_dim=32, context_length=16, positions="learned", drop_rate=0.0, minutes=2.0,
                batch_size=4, lr=3e-3, warmup_steps=5, weight_decay=0.1, seed=1)
WAIT_S = 180  # a bound on a hung child process, not a speed target: a training here takes seconds


@pytest.fixture
def registry(runner, tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", runs_root=runner.limits.runs_dir)


def form(**changes) -> train_tab.TrainForm:
    """The tab's settings: a tiny model on the pasted story, with `changes`."""
    return train_tab.TrainForm(**{**TINY_RUN, "pasted": STORY, "max_steps": 60, **changes})


def start(runner: JobRunner, who: str, steps: int = 60, **changes) -> str:
    line, owner = train_tab.start_training(runner, None, form(max_steps=steps, **changes), request=session(who))
    assert owner == who  # no browser token yet: the session owns it, and becomes the token
    return line


def finished(runner: JobRunner, who: str):
    job = runner.job_of(who)
    assert runner.wait(job, WAIT_S), "the training did not end"
    return job


# -- data --------------------------------------------------------------------------------------------

def test_corpora_bring_their_fixed_held_out_documents_and_pasted_text_its_tail():
    data = train_tab.gather_data(["Austen: emma"], "x" * 1000, None, 10**8, 10**6)
    assert len(data.train) == 2 and data.train[1] == "x" * 900
    assert data.held_out[-1] == "x" * 100 and data.held_out[0].startswith("Persuasion")
    assert data.name == "Austen: emma + your text"
    bible = train_tab.gather_data([train_tab.KJV], "", None, 10**8, 10**6)
    assert len(bible.train) == 61 and len(bible.held_out) == 5
    recipes = train_tab.gather_data([MODERN_TITLES["recipes"]], "", None, 10**8, 10**6)
    assert recipes.train[0].split("\n")[0] == "'Out of Salad Dressing' Salad Dressing"
    assert 3_000 < len(recipes.train) + len(recipes.held_out) == 3_129 and len(recipes.held_out) > 100


@pytest.mark.parametrize("corpora, pasted, message", [
    ([], "", "There is no training text"),
    ([], "   \n", "There is no training text"),
    (["Austen: persuasion"], "", "Unknown corpus"),  # held out: never trained on
    ([], "short text", "held-out part is under 200 characters"),
    (["Austen: emma"], "", "the limit here is 1,000"),
])
def test_bad_data_is_refused_clearly(corpora, pasted, message):
    with pytest.raises(ValueError, match=message):
        train_tab.gather_data(corpora, pasted, None, 1000 if corpora == ["Austen: emma"] else 10**8, 10**6)


def test_uploads_must_be_utf8_and_small(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 200)
    with pytest.raises(ValueError, match="not UTF-8"):
        train_tab.gather_data([], "", [str(tmp_path / "latin1.txt")], 10**8, 10**6)
    (tmp_path / "big.txt").write_text("word " * 1000)
    with pytest.raises(ValueError, match="the limit is"):
        train_tab.gather_data([], "", [str(tmp_path / "big.txt")], 10**8, 1000)
    (tmp_path / "ok.txt").write_text(STORY)
    assert train_tab.gather_data([], "", [str(tmp_path / "ok.txt")], 10**8, 10**6).name == "your text"


def test_preview_shows_tokens_windows_and_counts(runner):
    html, windows, counts = train_tab.preview(runner, form(context_length=16), 8)
    tokenizer = train_tab.build_tokenizer(train_tab.gather_data([], STORY, None, 10**8, 10**6), "bpe", 300)
    data = train_tab.gather_data([], STORY, None, 10**8, 10**6)
    n_windows = len(SlidingWindowDataset(tokenizer.encode(data.train[0] + "<|endoftext|>"), 16, 8))
    assert f"Windows of 16 tokens every 8: **{n_windows:,}**" in counts and "**300** tokens" in counts
    assert html.count('class="tok c') == train_tab.PREVIEW_TOKENS
    first, second = windows.iloc[0], windows.iloc[1]
    assert first["start"] == 0 and second["start"] == 8
    inputs = first["input (first tokens)"].removesuffix(" …").split(" | ")
    targets = first["target: the input shifted by one"].removesuffix(" …").split(" | ")
    assert len(inputs) == len(targets) == 16 and targets[:-1] == inputs[1:]
    _, _, gpt2_counts = train_tab.preview(runner, form(tokenizer_kind="gpt2"), 8)
    assert "**50,257** tokens" in gpt2_counts


def test_a_vocabulary_larger_than_the_text_allows_is_said(runner):
    _, _, counts = train_tab.preview(runner, form(pasted="abab cdcd " * 300, vocab_size=2000, preset="tiny"), 8)
    assert "you asked for 2,000: the text has no more pairs to merge" in counts


def test_model_check_measures_a_step_and_refuses_too_large_models(runner):
    info = train_tab.check_model(runner, form(positions="sinusoidal", minutes=1))
    cfg = train_tab.model_config(form(positions="sinusoidal"), 300)
    assert f"**{cfg.n_params() / 1e6:.2f}M parameters**" in info and "sinusoidal positions" in info
    assert "ms per step" in info and "the budget stops it after" in info
    with pytest.raises(ValueError, match="the limit here is 30M"):
        train_tab.check_model(runner, form(n_layers=24, n_heads=16, emb_dim=1024, context_length=512,
                                           tokenizer_kind="gpt2", minutes=1))
    with pytest.raises(ValueError, match="Steps must be between"):
        train_tab.check_model(runner, form(preset="tiny", max_steps=10**9, minutes=1))



def test_the_page_opens_with_the_defaults(runner, registry):
    """`train_tab.DEFAULTS` is what a visitor starts without changing anything (and what benchmarks.train_app runs)."""
    import gradio as gr

    with gr.Blocks() as page:
        picker = gr.Dropdown()
        with gr.Tab("Train") as tab:
            train_tab.build(runner, registry, picker, tab)
    start = next(fn for fn in page.fns.values() if fn.api_name == "train_start")
    shown = dict(zip(start.input_keyword_names, start.inputs[-len(start.input_keyword_names):], strict=True))
    empty = {"mlp_hidden", "n_kv_heads", "b_mlp_hidden", "b_n_kv_heads"}  # an empty box: GPTConfig's default (None)
    assert {name: c.value for name, c in shown.items() if name not in empty} == {
        name: value for name, value in asdict(train_tab.DEFAULTS).items() if name not in empty}
    assert all(shown[name].value == "" and getattr(train_tab.DEFAULTS, name) is None for name in empty)
    assert (train_tab.DEFAULTS.preset, train_tab.DEFAULTS.optimizer, train_tab.DEFAULTS.lr) == tuple(
        train_tab.DEFAULT_RECIPE[k] for k in ("preset", "optimizer", "lr"))

# -- jobs --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_training_runs_in_the_background_and_its_run_joins_the_picker(runner, registry):
    assert "Started" in start(runner, "alice", steps=80)
    job = finished(runner, "alice")
    assert job.state == "done", job.error
    line, figure, samples, result, _, picker = train_tab.status(runner, registry, None, request=session("alice"))
    steps = [e for e in job.events if e.kind == "step"]
    assert steps[-1].metrics["train_loss"] < steps[0].metrics["train_loss"] - 1.0
    assert [t.name for t in figure.data] == ["train", "validation (held out)"]
    assert len(samples) >= 4 and samples["sample"].str.startswith("It is a truth").all()
    name = RUN_PREFIX + job.name
    assert "Finished" in line and name in result and "xz -9" in result and name in choices(picker)
    text, _ = list(generate_tab.generate(registry, name, "It is a truth", 0.0, 0, 1.0, 8, 0))[-1]
    assert text  # the run generates in the Generate tab
    runs = train_tab.list_runs(registry)
    assert runs["model"].tolist() == [name] and runs["steps"].tolist() == [80]


@pytest.mark.slow
def test_one_training_per_session_and_only_the_owner_stops_it(runner, registry):
    start(runner, "alice", steps=20_000)
    with pytest.raises(JobError, match="already have a training"):
        start(runner, "alice")
    job = runner.job_of("alice")
    with pytest.raises(JobError, match="Only the session that started"):
        runner.stop(job, "mallory")
    with pytest.raises(ValueError, match="no training running"):
        train_tab.stop_training(runner, None, session("mallory"))
    line = train_tab.status(runner, registry, None, request=session("mallory"))[0]
    assert "training for 1 other session" in line and job.name not in line
    assert "Stopping" in train_tab.stop_training(runner, None, session("alice"))
    assert finished(runner, "alice").state == "stopped"


def wait_for_steps(runner: JobRunner, job, n: int) -> None:
    """Until the running `job` has reported `n` steps."""
    while sum(e.kind == "step" for e in job.events) < n:
        assert job.active, job.error
        runner.wait(job, 0.2)


def stop_then_resume(runner: JobRunner, steps: int):
    """Alice's long training stopped after `steps` steps, then resumed: (the stopped job, Resume's message, the
    resumed job once it has trained a step)."""
    start(runner, "alice", steps=20_000)
    wait_for_steps(runner, runner.job_of("alice"), steps)
    train_tab.stop_training(runner, None, session("alice"))
    job = finished(runner, "alice")
    message = train_tab.resume_training(runner, None, session("alice"))
    resumed = runner.job_of("alice")
    wait_for_steps(runner, resumed, 1)
    return job, message, resumed


@pytest.mark.slow
def test_a_stopped_run_resumes_from_its_checkpoint(runner, registry):
    job, message, resumed = stop_then_resume(runner, 20)
    stopped_at = job.result.steps
    assert job.state == "stopped" and stopped_at >= 20
    assert (runner.limits.runs_dir / job.name / "model" / "config.json").is_file()
    assert "Resuming" in message
    started = next(e for e in resumed.events if e.kind == "start" and "recipe" not in e.metrics)  # the trainer's
    assert resumed.name == job.name and started.step == stopped_at  # "start" at the checkpoint
    train_tab.stop_training(runner, None, session("alice"))
    finished(runner, "alice")


@pytest.mark.slow
def test_the_curve_after_a_resume_shows_the_whole_run(runner, registry):
    job, _, resumed = stop_then_resume(runner, 5)
    before = [e for e in job.events if e.kind == "step"]
    train_tab.stop_training(runner, None, session("alice"))
    finished(runner, "alice")
    _, figure, *_ = train_tab.status(runner, registry, None, request=session("alice"))
    after = [e for e in resumed.events if e.kind == "step"]
    train = figure.data[0]
    assert before[0].step == 1 and train.x[0] == before[0].tokens_seen  # the first point is step 1's
    assert list(train.x) == [e.tokens_seen for e in before + after]


@pytest.mark.slow
def test_jobs_wait_in_a_queue_and_are_told_their_place(tmp_path):
    runner = JobRunner(TrainLimits(runs_dir=tmp_path / "runs", threads=1, max_running=1, max_queued=1))
    start(runner, "alice", steps=20_000)
    assert "place 1 in the queue" in start(runner, "bob")
    assert runner.busy() == (1, 1)
    with pytest.raises(JobError, match="queue is full"):
        start(runner, "carol")
    bob = runner.job_of("bob")
    runner.stop(bob, "bob")
    assert bob.state == "cancelled"
    train_tab.stop_training(runner, None, session("alice"))
    finished(runner, "alice")


def failing_training(monitor, **kwargs) -> None:
    """A training that fails in its process (module level: the child process imports it)."""
    raise ValueError("the data ran out")


def test_a_text_too_short_for_one_batch_is_refused_before_anything_starts(runner):
    with pytest.raises(ValueError, match="fewer than a batch of 64"):
        start(runner, "alice", batch_size=64, context_length=512)
    assert runner.job_of("alice") is None and not runner.limits.runs_dir.exists()


@pytest.mark.slow
def test_a_failed_training_is_a_message_and_frees_the_slot(runner, registry):
    runner.submit("alice", "doomed", failing_training, {})
    job = finished(runner, "alice")
    assert job.state == "failed" and job.error == "the data ran out"
    assert "failed: the data ran out" in train_tab.status(runner, registry, None, request=session("alice"))[0]
    assert runner.busy() == (0, 0)


def test_limits_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GPT_TRAIN_MAX_PARAMS", "1000")
    monkeypatch.setenv("GPT_RUNS_DIR", str(tmp_path))
    limits = TrainLimits.from_env()
    assert limits.max_params == 1000 and limits.runs_dir == tmp_path and limits.max_running == 1
    monkeypatch.setenv("GPT_TRAIN_MAX_STEPS", "lots")
    with pytest.raises(ValueError, match="GPT_TRAIN_MAX_STEPS must be a number"):
        TrainLimits.from_env()


@pytest.mark.slow
def test_old_runs_beyond_the_limit_are_removed(tmp_path):
    runner = JobRunner(TrainLimits(runs_dir=tmp_path / "runs", threads=1, keep_runs=1, protect_hours=0))
    for who in ("alice", "bob"):
        start(runner, who, steps=10)
        finished(runner, who)
    assert [d.name for d in (tmp_path / "runs").iterdir() if not d.name.startswith(".")] == [runner.job_of("bob").name]


# -- runs as zips ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_downloaded_run_uploads_again_as_a_new_run(runner, registry):
    start(runner, "alice", steps=10)
    job = finished(runner, "alice")
    archive = train_tab.download_run(registry, RUN_PREFIX + job.name)
    message, picker = train_tab.upload_run(runner, registry, archive)
    uploaded = message.split("`")[1]
    assert uploaded in choices(picker)
    original, again = registry.load(RUN_PREFIX + job.name), registry.load(uploaded)
    assert again.model.cfg == original.model.cfg and again.meta["steps"] == 10


@pytest.mark.parametrize("member", ["../evil.txt", "/abs.txt", "model/../../x"])
def test_an_upload_that_is_not_a_run_is_refused_and_writes_nothing(runner, registry, tmp_path, member):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr(member, "x")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="Not a run archive"):
        train_tab.upload_run(runner, registry, str(bad))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    (tmp_path / "text.zip").write_text("not a zip")
    with pytest.raises(ValueError, match="Not a run archive"):
        train_tab.upload_run(runner, registry, str(tmp_path / "text.zip"))
    with pytest.raises(ValueError, match="is not a run trained here"):
        train_tab.download_run(registry, "base")


def test_run_names_cannot_leave_the_runs_folder(registry):
    for name in ("run:../models", "run:", "run:a/../../b"):
        with pytest.raises(ValueError):
            registry.resolve(name)


@pytest.mark.slow
def test_event_rows_feed_the_loss_figure(runner):
    start(runner, "alice", steps=20)
    job = finished(runner, "alice")
    rows = pd.DataFrame(training_panel.loss_rows(job.events))
    assert rows["train_loss"].notna().sum() == 20 and rows["val_loss"].notna().sum() == 20
    assert Path(runner.limits.runs_dir / job.name / "MODEL_CARD.md").is_file()


def test_a_run_that_trained_further_is_loaded_anew(registry, tmp_path):
    from gpt.checkpoint import save_checkpoint
    from gpt.config import GPTConfig
    from gpt.model import GPTModel
    from gpt.tokenizer import load_tokenizer

    folder = registry.runs_root / "grown" / "model"
    save_checkpoint(GPTModel(GPTConfig.preset("tiny", vocab_size=50257)), folder, load_tokenizer("gpt2"),
                    meta={"steps": 1})
    first = registry.load("run:grown")
    assert registry.load("run:grown") is first  # cached while its files stay the same
    save_checkpoint(GPTModel(GPTConfig.preset("tiny", vocab_size=50257)), folder, load_tokenizer("gpt2"),
                    meta={"steps": 2})
    assert registry.load("run:grown").meta["steps"] == 2


# -- every training input's range is its config field's ------------------------------------------------

def test_every_training_input_takes_its_range_from_its_config_field(runner, registry):
    """A limit is changed in one place: the config's field. Where the app allows less, the cap is named here."""
    from app import build_app
    from gpt.classify.finetune import ClassifierConfig
    from gpt.config import GPTConfig, bounds
    from gpt.instruct.finetune import InstructConfig
    from gpt.pretrain.trainer import PretrainConfig
    from gpt.reasoning.grpo import RLConfig
    from ui import chat_tab, reasoning_tab
    from ui.forms import OPTION_CLASS

    configs = {c.__name__: c for c in (GPTConfig, PretrainConfig, ClassifierConfig, InstructConfig, RLConfig)}
    caps = {  # (low, high) of the app's own limits, where narrower than the field's
        "GPTConfig.vocab_size": (train_tab.MIN_VOCAB, runner.limits.max_vocab),
        "PretrainConfig.max_steps": (None, runner.limits.max_steps),
        "PretrainConfig.warmup_steps": (None, runner.limits.max_steps),
        "ClassifierConfig.lora_rank": (1, None),  # the LoRA choice: rank 0 would be no LoRA
        "InstructConfig.epochs": (None, chat_tab.MAX_EPOCHS),
        "InstructConfig.lora_rank": (None, chat_tab.MAX_RANK),
        "RLConfig.steps": (None, reasoning_tab.MAX_RL_STEPS),
        "RLConfig.group_size": (None, reasoning_tab.MAX_GROUP),
    }
    found = {}
    for block in build_app(registry, runner).blocks.values():
        option = next((c for c in getattr(block, "elem_classes", None) or [] if c.startswith(OPTION_CLASS)), None)
        if option is None:
            continue
        key = option.removeprefix(OPTION_CLASS)
        config, name = key.split(".")
        low, high = bounds(configs[config], name)
        cap_low, cap_high = caps.get(key, (None, None))
        expected = (low if cap_low is None else max(low, cap_low), high if cap_high is None else min(high, cap_high))
        found[key] = (block.minimum, block.maximum)
        assert found[key] == expected, key
    assert set(found) == {
        *(f"GPTConfig.{n}" for n in ("vocab_size", "drop_rate", "n_layers", "n_heads", "emb_dim", "context_length",
                                     "rope_base")),
        *(f"PretrainConfig.{n}" for n in ("max_steps", "batch_size", "lr", "warmup_steps", "weight_decay", "seed")),
        *(f"ClassifierConfig.{n}" for n in ("trainable_blocks", "lora_rank", "lora_alpha", "epochs", "lr", "seed")),
        *(f"InstructConfig.{n}" for n in ("epochs", "lr", "batch_size", "lora_rank", "lora_alpha")),
        *(f"RLConfig.{n}" for n in ("steps", "group_size", "seed")),
    }
