"""The Chat tab's finetune, side by side, download and upload: event functions and the job runner, with real
finetunes of tiny random models in child processes (seconds each)."""

from __future__ import annotations

import json
import zipfile

import pytest

from gpt.checkpoint import load_checkpoint_tokenizer, save_checkpoint
from gpt.data.download import DownloadError
from gpt.generate import SamplingConfig
from gpt.instruct import data as instruct_data
from gpt.instruct.data import SHIPPED_DATA, load_entries, split_entries
from gpt.instruct.prompt import chat_stream
from tests.ui.helpers import ENTRIES, choices, session
from ui import chat_tab
from ui.jobs import JobError, JobRunner
from ui.registry import RUN_PREFIX

WAIT_S = 180  # a bound on a hung child process, not a speed target
# base, data, kinds of question, entries, file, epochs, lr, batch, LoRA rank, alpha, mask prompt, digits (the file
# goes in by fixture; the kinds filter the shipped set only)
SETTINGS = dict(base="base", data="upload", families=["small talk"], max_entries=1000, epochs=2, lr=3e-3, batch_size=8,
                lora_rank=4, lora_alpha=8.0, mask_prompt=True, digits=True)


@pytest.fixture
def upload(tmp_path) -> str:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(ENTRIES))
    return str(path)


def start(runner, tiny_registry, who: str, upload: str, **changes) -> str:
    form = chat_tab.ChatFinetuneForm(**{**SETTINGS, "file": upload, **changes})
    line, owner = chat_tab.start_finetune(runner, tiny_registry, None, form, request=session(who))
    assert owner == who
    return line


def finished(runner: JobRunner, who: str):
    job = runner.job_of(who, "instruct")
    assert runner.wait(job, WAIT_S), "the finetune did not end"
    return job


@pytest.mark.slow
def test_a_lora_finetune_runs_in_the_background_and_its_model_chats(runner, tiny_registry, upload):
    line = start(runner, tiny_registry, "alice", upload)
    assert line.startswith("Started **run:chat-") and "LoRA rank 4 on all layers, 51 entries, 2 epoch(s)" in line
    job = finished(runner, "alice")
    assert job.state == "done", job.error
    line, figure, result, timer, picker, left, right, base = chat_tab.finetune_status(runner, tiny_registry, None,
                                                                                      session("alice"))
    name = RUN_PREFIX + job.name
    assert line == f"Finished: {name} (finished 2 epochs (12 steps))." and not timer.active
    assert [t.name for t in figure.data] == ["train", "validation (held out)"]
    assert len(figure.data[0].y) == 12 and len(figure.data[1].y) >= 4  # 6 steps an epoch; ten points asked
    assert "LoRA rank 4 on all layers" in result and "| kind of question | base: base | this model |" in result
    assert "| addition |" in result and "| all |" in result and "peak memory" in result
    assert name in choices(picker) and name in choices(left) and name in choices(base)
    assert tiny_registry.chat_names()[:2] == ["instruct", name]  # a chat model, and a language model everywhere
    assert name in tiny_registry.names()
    info, scores = chat_tab.model_info(tiny_registry, name)
    assert "Finetuned from **base** on your file mine.json (51 entries, 2 epochs, LoRA rank 4" in info
    assert "Its base model answered the same questions" in scores and "| base: base | this model |" in scores
    reply, prompt = list(chat_tab.chat(tiny_registry, "What is 2 + 3?", [], 0.0, 4, 1, name))[-1]
    assert "### Instruction:\nWhat is 2 + 3?" in prompt and reply
    folder = runner.limits.runs_dir / job.name
    assert (folder / "model" / "adapters.safetensors").is_file() and (folder / "instruction-data.json.gz").is_file()
    assert load_checkpoint_tokenizer(folder / "model").pretokenizer == "digits"  # "Numbers digit by digit" was on
    archive = chat_tab.download_chat(tiny_registry, name)  # and back again, with its scores
    assert "model/eval.json" in zipfile.ZipFile(archive).namelist()
    message, picker = chat_tab.upload_chat(runner, tiny_registry, archive)
    again = message.split("`")[1]
    assert again in choices(picker) and again in tiny_registry.chat_names()
    assert chat_tab.model_info(tiny_registry, again)[1] == scores


@pytest.mark.slow
def test_a_stopped_finetune_keeps_the_weights_so_far_and_scores_them(runner, tiny_registry, upload):
    start(runner, tiny_registry, "alice", upload, epochs=5, lora_rank=0, max_entries=48, digits=False)
    job = runner.job_of("alice", "instruct")
    while sum(e.kind == "step" for e in job.events) < 3:
        assert job.active, job.error
        runner.wait(job, 0.1)
    assert "Stopping" in chat_tab.stop_finetune(runner, None, session("alice"))
    job = finished(runner, "alice")
    assert job.state == "stopped" and job.result.stopped and 3 <= job.result.steps < 30
    assert job.result.method == "all layers" and job.result.trainable_params == job.result.total_params
    line, _, result, *_ = chat_tab.finetune_status(runner, tiny_registry, None, session("alice"))
    assert "(stopped early: these are the weights it had)" in result
    assert RUN_PREFIX + job.name in tiny_registry.chat_names()
    assert load_checkpoint_tokenizer(runner.limits.runs_dir / job.name / "model").pretokenizer == "gpt2"  # the base's
    with pytest.raises(ValueError, match="no chat finetune running"):
        chat_tab.stop_finetune(runner, None, session("alice"))


def test_the_default_finetune_trains_on_the_kinds_of_question_picked(runner, tiny_registry, monkeypatch, tmp_path):
    """The shipped set, cut to the defaults' kinds of question before the entries are counted and sent."""
    sent = []

    class Capture:  # the panel, up to the job runner: what would be started
        def start(self, runner, owner, prepare):
            sent.append(prepare(tmp_path))
            return sent[-1].about

    monkeypatch.setattr(chat_tab, "PANEL", Capture())
    form = chat_tab.DEFAULT_FORM
    line, _ = chat_tab.start_finetune(runner, tiny_registry, None, form, request=session("alice"))
    available = sum(e["task"] in form.families for e in split_entries(load_entries(SHIPPED_DATA)).train)
    n_train = min(form.max_entries, available)
    steps = n_train // form.batch_size
    assert line == f"all layers, {n_train:,} entries of {', '.join(form.families)}, 1 epoch(s), {steps:,} steps"
    assert sent[0].kwargs["families"] == form.families and sent[0].kwargs["max_train"] == n_train
    assert sent[0].kwargs["cfg"].eval_every == steps // 10


@pytest.mark.slow
def test_one_job_per_session_and_others_see_a_busy_machine(runner, tiny_registry, upload):
    start(runner, tiny_registry, "alice", upload, epochs=5)
    with pytest.raises(JobError, match="already have a training"):
        start(runner, tiny_registry, "alice", upload)
    line = chat_tab.finetune_status(runner, tiny_registry, None, session("mallory"))[0]
    assert "training for 1 other session" in line
    with pytest.raises(ValueError, match="no chat finetune running"):
        chat_tab.stop_finetune(runner, None, session("mallory"))
    chat_tab.stop_finetune(runner, None, session("alice"))
    finished(runner, "alice")


BAD = [
    ({"base": "spam"}, "unknown model 'spam'"),  # a classifier, not a language model
    ({"base": "garbage"}, "unknown model 'garbage'"),
    ({"base": "gpt2-medium"}, "355M parameters; the limit here is 200M with LoRA"),  # the form trains LoRA
    ({"base": "local:nothing"}, "not available"),
    ({"epochs": 0}, "Epochs must be between 1 and 5"),
    ({"lr": -1.0}, "Learning rate must be between"),
    ({"lora_rank": 2.5}, "LoRA rank must be a whole number"),
    ({"lora_alpha": float("nan")}, "LoRA alpha must be a number"),
    ({"max_entries": "lots"}, "Training entries must be a number"),
    ({"batch_size": 64, "max_entries": 40}, "40 training entries make no batch of 64"),
    ({"data": "mystery"}, "Unknown data 'mystery'"),
    ({"data": "shipped", "families": ["cooking"]}, "Kinds of question: pick among small talk, multiplication"),
    ({"data": "shipped", "families": "small talk"}, "Kinds of question: pick among"),
    ({"file": None}, "Choose an Alpaca-format .json file"),
]


@pytest.mark.parametrize(("changes", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_settings_get_a_message_and_change_nothing(runner, tiny_registry, upload, changes, message):
    with pytest.raises(ValueError, match=message):
        start(runner, tiny_registry, "alice", upload, **changes)
    assert runner.job_of("alice") is None and not runner.limits.runs_dir.exists()


@pytest.mark.parametrize(("content", "message"), [
    ('[{"instruction": "Hi"}]', "entry 0 has no 'output' field"),
    ('[{"instruction": "Hi", "input": 7, "output": "x"}]', "'input' must be a string, got a number"),
    ("[]", "got an empty list"),
    ("not json at all", "is not JSON"),
])
def test_an_upload_that_is_not_alpaca_json_changes_nothing(runner, tiny_registry, tmp_path, content, message):
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        start(runner, tiny_registry, "alice", str(tmp_path / "bad.json"))
    assert runner.job_of("alice") is None and not runner.limits.runs_dir.exists()


def test_a_100_mb_upload_is_refused_before_it_is_read(runner, tiny_registry, tmp_path):
    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:
        f.truncate(100 * 2**20)  # sparse: nothing is written
    with pytest.raises(ValueError, match="huge.json is 100.0 MB: the limit is 20 MB"):
        start(runner, tiny_registry, "alice", str(huge))
    with pytest.raises(ValueError, match="100.0 MB: the limit is 20 MB"):
        chat_tab.upload_chat(runner, tiny_registry, str(huge))
    assert not runner.limits.runs_dir.exists()


def test_the_books_data_offline_is_a_clear_message(runner, tiny_registry, monkeypatch):
    def offline():
        raise DownloadError("could not download instruction-data.json (no network)")

    monkeypatch.setattr(instruct_data, "download_instruction_data", offline)
    with pytest.raises(ValueError, match="The book's data is not cached and cannot be downloaded here"):
        start(runner, tiny_registry, "alice", None, data="book")
    assert not runner.limits.runs_dir.exists()


def test_side_by_side_answers_one_message_with_two_models_greedily(tiny_registry):
    left, right = list(chat_tab.compare(tiny_registry, "base", "instruct", "Name a colour.", 6))[-1]
    greedy = SamplingConfig(max_new_tokens=6, temperature=0.0)
    for name, reply in (("base", left), ("instruct", right)):
        expected = list(chat_stream(tiny_registry.load(name), [], "Name a colour.", greedy))
        assert reply == (expected[-1] if expected else chat_tab.EMPTY_REPLY)
    with pytest.raises(ValueError, match="unknown model 'spam'"):
        list(chat_tab.compare(tiny_registry, "spam", "instruct", "Name a colour.", 6))
    with pytest.raises(ValueError, match="empty"):
        list(chat_tab.compare(tiny_registry, "base", "instruct", "   ", 6))
    with pytest.raises(ValueError, match="Max new tokens must be between"):
        list(chat_tab.compare(tiny_registry, "base", "instruct", "Hi", 10_000))


def test_only_chat_models_go_in_and_out_as_chat_zips(runner, tiny_registry, tmp_path):
    with pytest.raises(ValueError, match="not a chat model finetuned here"):
        chat_tab.download_chat(tiny_registry, "instruct")
    pretrained = runner.limits.runs_dir / "pretrained"  # a Train-tab run: a language model, not a chat model
    ckpt = tiny_registry.load("base")
    save_checkpoint(ckpt.model, pretrained / "model", ckpt.tokenizer, meta={"steps": 10})
    with pytest.raises(ValueError, match="not a chat model finetuned here"):
        chat_tab.download_chat(tiny_registry, "run:pretrained")
    from gpt.pretrain.archive import write_run_archive

    archive = write_run_archive(pretrained, tmp_path / "run.zip")
    before = sorted(runner.limits.runs_dir.iterdir())
    with pytest.raises(ValueError, match="Not a chat model"):
        chat_tab.upload_chat(runner, tiny_registry, str(archive))
    (tmp_path / "junk.zip").write_text("not a zip")
    with pytest.raises(ValueError, match="Not a run archive"):
        chat_tab.upload_chat(runner, tiny_registry, str(tmp_path / "junk.zip"))
    assert sorted(runner.limits.runs_dir.iterdir()) == before


def test_a_model_in_another_prompt_format_is_refused(tiny_registry, runner):
    ckpt = tiny_registry.load("base")
    save_checkpoint(ckpt.model, runner.limits.runs_dir / "phi" / "model", ckpt.tokenizer,
                    meta={"finetune": {}, "prompt_format": "phi-3"})
    with pytest.raises(ValueError, match="trained on 'phi-3' prompts"):
        list(chat_tab.chat(tiny_registry, "Hi", [], 0.0, 4, 1, "run:phi"))
    assert chat_tab.finetune_method({}) == "all layers"
    assert chat_tab.finetune_method("garbage") == "settings not recorded"
