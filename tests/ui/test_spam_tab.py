"""The Spam tab: a classifier measured on several test sets, the shipped classifier on the tab's examples, and
finetuning, stopping, listing, downloading and uploading classifiers of tiny models through the job runner."""

from __future__ import annotations

import json
import re
import shutil
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from gpt.classify import data
from gpt.classify.app_defaults import read_measurement
from gpt.classify.archive import MEMBERS
from gpt.classify.classifier import CLASSIFIER_CONFIG, METRICS_FILE, ClassifierMetrics, dump_test_metrics
from gpt.classify.data import MODERN_TEST, SET_TITLES, SMS_TEST, SPAMASSASSIN_TEST
from gpt.files import SHIPPED_MODELS, write_text_atomic
from tests.helpers import make_model_folder
from tests.ui.helpers import TOPICS, WORDS, session, write_table
from ui import spam_tab
from ui.jobs import JobRunner, TrainLimits
from ui.registry import RUN_PREFIX, ModelRegistry

SETS = (SMS_TEST, SPAMASSASSIN_TEST, MODERN_TEST)  # in the order a mixed classifier is measured


@pytest.fixture(scope="module")
def mixed_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model folder, its classifier's figures replaced by figures on the three sets of the mix."""
    root = make_model_folder(tmp_path_factory.mktemp("models"))
    evaluations = {name: ClassifierMetrics.from_predictions(
        [0] * 4 + [1] * 4, [0] * (4 - i) + [1] * (4 + i), ["ham", "spam"], f"{name} source",
        {label: [f"{name} {label} {j}" for j in range(4)] for label in ("ham", "spam")}) for i, name in enumerate(SETS)}
    write_text_atomic(root / "spam" / METRICS_FILE, dump_test_metrics(evaluations))
    return root


def test_examples_are_the_hand_picked_ones_for_the_spam_data_else_the_classifiers_own(mixed_models, tmp_path):
    """A classifier with no record of its data (as the tiny one) offers its first set's stored test messages."""
    own = spam_tab.labelled_examples(ModelRegistry(mixed_models))
    assert own == [(f"{SMS_TEST} {label} {j}", label) for label in ("ham", "spam")
                   for j in range(spam_tab.EXAMPLES_PER_CLASS)]
    for mix in data.MIXES:  # a classifier of the shipped spam data, finetuned in the tab or shipped
        models = tmp_path / mix
        shutil.copytree(mixed_models, models)
        config = json.loads((models / "spam" / CLASSIFIER_CONFIG).read_text())
        config["meta"]["data"] = {"kind": "offline", "mix": mix}
        (models / "spam" / CLASSIFIER_CONFIG).write_text(json.dumps(config))
        assert spam_tab.labelled_examples(ModelRegistry(models)) == list(spam_tab.EXAMPLES)
    assert spam_tab.examples(ModelRegistry(tmp_path / "none")) == [text for text, _ in spam_tab.EXAMPLES]


UNFIT_WORDS = ("sex", "sexy", "laid", "dogging", "naked", "nude", "porn", "xxx", "horny", "explicit", "erotic")


def test_the_examples_are_held_out_and_fit_for_a_classroom():
    """Picked from messages no classifier of the spam data trains on (mostly today's), each labelled as its set
    labels it; no HTML entity (the SMS collection has `&lt;#&gt;`), no sexual word, no receipt called spam."""
    modern = {m.text: data.LABELS[m.label] for m in data.load_modern(data.MODERN_HELDOUT).messages}
    sms = {m.text: data.LABELS[m.label] for m in data.balanced_split(data.load_corpus("offline")).test}
    assert [(text, label) for text, label in spam_tab.EXAMPLES if {**sms, **modern}.get(text) != label] == []
    from_modern = [text for text, _ in spam_tab.EXAMPLES if text in modern]
    assert len(from_modern) > len(spam_tab.EXAMPLES) / 2 and len(from_modern) < len(spam_tab.EXAMPLES)
    unfit = re.compile(r"&#?\w+;|\b(" + "|".join(UNFIT_WORDS) + r")\b", re.IGNORECASE)
    assert [text for text, _ in spam_tab.EXAMPLES if unfit.search(text)] == []
    assert [text for text, label in spam_tab.EXAMPLES if label == "spam" and "receipt" in text.lower()] == []
    assert sorted({label for _, label in spam_tab.EXAMPLES}) == ["ham", "spam"]


def test_the_shipped_classifier_labels_every_example_right():
    """What the tab offers to click must be right: no everyday message shown as spam, no spam as ham."""
    registry = ModelRegistry(SHIPPED_MODELS)
    model = spam_tab.classifier(registry)
    assert spam_tab.labelled_examples(registry) == list(spam_tab.EXAMPLES)
    assert [(text, label) for text, label in spam_tab.EXAMPLES if model.predict(text).label != label] == []


def test_the_panel_states_what_its_defaults_reach_and_cost_as_measured():
    """The shipped measurement is of the form's defaults, on every test set; other settings get no claim."""
    measured = read_measurement()
    assert measured is not None and measured.matches(spam_tab.APP, spam_tab.APP_LORA)
    assert list(measured.accuracy) == list(SETS)
    note = spam_tab.defaults_note(measured)
    for name, value in measured.accuracy.items():
        assert f"{SET_TITLES[name]} **{value:.1%}**" in note
    assert f"**{measured.lora_slowdown:.1f}× slower per step**" in note and measured.machine in note
    assert "`python -m gpt.classify.app_defaults`" in note
    assert spam_tab.defaults_note(replace(measured, finetune={**measured.finetune, "epochs": 9})) == ""
    assert spam_tab.defaults_note(None) == ""


def test_figures_for_every_test_set(mixed_models):
    summary, table, confusion = spam_tab.test_figures(ModelRegistry(mixed_models))
    for i, name in enumerate(SETS):
        assert f"{SET_TITLES[name]}: **{(8 - i) / 8:.1%}** on 8 held-out messages ({name} source)" in summary
    assert table["set"].tolist() == [SET_TITLES[name] for name in SETS for _ in range(2)]
    assert table["class"].tolist() == ["ham", "spam"] * 3
    assert [[list(row) for row in trace.z] for trace in confusion.data] == [[[4 - i, i], [0, 4]] for i in range(3)]
    assert [a.text for a in confusion.layout.annotations][:3] == [SET_TITLES[name] for name in SETS]


# -- finetuning in the tab: tiny models through the job runner ---------------------------------------

WAIT_S = 180  # a bound on a hung child process, not a speed target


SETTINGS = {"base": "base", "head_token": "last", "trains": "last blocks", "blocks": 1, "lora_rank": 8,
            "lora_alpha": 16, "epochs": 1, "lr": 1e-3, "seed": 1, "data_choice": spam_tab.FILE_DATA}


def start(runner: JobRunner, registry: ModelRegistry, who: str, file: Path | None, **changes) -> str:
    settings = {**SETTINGS, "file": str(file) if file else None, **changes}
    line, owner = spam_tab.start_finetune(runner, registry, None, spam_tab.FinetuneForm(**settings),
                                          request=session(who))
    assert owner == who  # no browser token yet: the session owns it
    return line


def status(runner: JobRunner, registry: ModelRegistry, who: str, announced: str | None = None) -> tuple:
    return spam_tab.finetune_status(runner, registry, None, announced, request=session(who))


@pytest.mark.slow
def test_a_lora_finetune_runs_in_the_background_and_lands_in_the_picker_the_table_and_a_zip(runner, tiny_registry,
                                                                                                tmp_path):
    table = write_table(tmp_path / "topics.csv")
    line = start(runner, tiny_registry, "owner-one", table, trains="LoRA", head_token="mean", lora_rank=4)
    assert line.startswith("Started **run:spam-") and "LoRA rank 4" in line
    assert "3 classes (cooking, sport, travel)" in line
    other = status(runner, tiny_registry, "someone-else")
    assert "training for 1 other session" in other[0] and other[1] is None  # others see a busy machine, no more
    with pytest.raises(ValueError, match="no finetuning running"):
        spam_tab.stop_finetune(runner, None, request=session("someone-else"))
    job = runner.job_of("owner-one", spam_tab.KIND)
    assert runner.wait(job, WAIT_S) and job.state == "done", job.error
    line, curves, result, per_class, confusion, timer, picker, announced = status(runner, tiny_registry, "owner-one")
    name = RUN_PREFIX + job.name
    assert line.startswith(f"Finished: {name}") and f"### {name}" in result and "trainable parameters" in result
    assert {trace.name for trace in curves.data} >= {"train loss", "validation accuracy"}
    assert per_class["class"].tolist() == ["cooking", "sport", "travel"] and len(confusion.data[0].z) == 3
    assert picker.value == name and name in [value for value, _ in picker.choices] and announced == job.id
    assert "value" not in status(runner, tiny_registry, "owner-one", announced)[6].constructor_args  # picked once

    model = spam_tab.classifier(tiny_registry, name)
    assert model.labels == ["cooking", "sport", "travel"] and model.head_token == "mean"
    assert model.config["lora"]["rank"] == 4 and model.config["base"]["name"] == "base"
    probs, html, _ = spam_tab.classify(tiny_registry, "Chop the onions and fry them", name)
    assert set(probs) == set(model.labels) and "<span" in html
    row = spam_tab.experiments(tiny_registry).set_index("classifier").loc[name]
    meta = model.config["meta"]
    assert (row["trained"], row["head reads"], row["classes"]) == ("LoRA rank 4, alpha 16, and the head", "mean", 3)
    # rank 4 on each of 2 blocks: qkv 64 -> 192, out_proj 64 -> 64, fc 64 -> 256, proj 256 -> 64; and a 3-class head
    adapters = 2 * 4 * ((64 + 192) + (64 + 64) + (64 + 256) + (256 + 64))
    assert row["trainable params"] == meta["trainable_params"] == adapters + 3 * 64 + 3
    assert row["test accuracy"] == round(model.test_metrics[data.FILE_TEST].accuracy, 4)
    written = {t.format(w) for templates in TOPICS.values() for t in templates for w in WORDS}
    assert spam_tab.examples(tiny_registry, name)[0] in written

    archive = spam_tab.download_classifier(tiny_registry, name)
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == sorted(MEMBERS)
    message, picker = spam_tab.upload_classifier(runner, tiny_registry, archive)
    uploaded = picker.value
    assert uploaded.startswith("run:upload-") and f"`{uploaded}`" in message
    again = spam_tab.classify(tiny_registry, "Chop the onions and fry them", uploaded)[0]
    assert again == pytest.approx(probs, abs=1e-6)


@pytest.mark.slow
def test_stop_keeps_the_weights_so_far_and_still_writes_a_classifier(runner, tiny_registry, tmp_path):
    start(runner, tiny_registry, "owner-two", write_table(tmp_path / "topics.csv"), epochs=20)
    assert "Stopping" in spam_tab.stop_finetune(runner, None, request=session("owner-two"))
    job = runner.job_of("owner-two", spam_tab.KIND)
    assert runner.wait(job, WAIT_S) and job.state == "stopped", job.error
    line, _, result, *_ = status(runner, tiny_registry, "owner-two")
    assert "stop requested" in line and "stop requested" in result
    model = spam_tab.classifier(tiny_registry, RUN_PREFIX + job.name)
    assert "stopped" in model.config["meta"] and len(model.config["meta"]["history"]) == 1


def write_bytes(path: Path, raw: bytes) -> Path:
    path.write_bytes(raw)
    return path


def big_file(path: Path) -> Path:
    with open(path, "wb") as f:
        f.truncate(100 * 2**20)  # 100 MB, sparse: the size is what is checked first
    return path


GOOD_ROWS = "".join(f"message {i},{'ham' if i % 2 else 'spam'}\n" for i in range(40))
BAD_DATA = [
    ("one-class.csv", lambda p: write_bytes(p, b"text,label\n" + b"hi there,ham\n" * 30), "at least two classes"),
    ("empty.csv", lambda p: write_bytes(p, ("text,label\n" + GOOD_ROWS + ",ham\nhello,\n").encode()),
     "2 row\\(s\\) have an empty text or label"),
    ("numbers.csv", lambda p: write_bytes(p, ("text,label\n" + GOOD_ROWS.replace("spam", "0").replace("ham", "1"))
                                          .encode()), "the labels are numbers"),
    ("few.csv", lambda p: write_bytes(p, ("text,label\n" + GOOD_ROWS + "odd one,eggs\n").encode()),
     "'eggs' has 1"),
    ("latin1.csv", lambda p: write_bytes(p, ("text,label\n" + GOOD_ROWS + "café,ham\n").encode("latin-1")),
     "not UTF-8"),
    ("huge.csv", big_file, "100.0 MB: the limit is 20 MB"),
    (None, None, "Choose a file"),
]


@pytest.mark.parametrize("name, make, message", BAD_DATA, ids=[m for *_, m in BAD_DATA])
def test_bad_data_gets_a_message_and_changes_nothing(runner, tiny_registry, tmp_path, name, make, message):
    file = make(tmp_path / name) if name else None
    with pytest.raises(ValueError, match=message):
        start(runner, tiny_registry, "owner-three", file)
    assert runner.job_of("owner-three") is None and not runner.limits.runs_dir.exists()


BAD_SETTINGS = [
    ({"base": "spam"}, "unknown model 'spam'"),  # a classifier, not a language model
    ({"base": "garbage"}, "unknown model 'garbage'"),
    ({"base": "run:../../etc"}, "run:<name>"),
    ({"base": "local:nothing"}, "not available"),
    ({"base": ""}, "Pick a base model"),
    ({"blocks": 3}, "Blocks \\(the base has 2\\) must be between 0 and 2"),
    ({"trains": "LoRA", "lora_rank": 0}, "LoRA rank must be between 1"),
    ({"trains": "everything"}, "What trains must be one of"),
    ({"head_token": "middle"}, "The head reads one of"),
    ({"epochs": 0}, "Epochs must be between 1"),
    ({"epochs": 1.5}, "Epochs must be a whole number"),
    ({"lr": "fast"}, "Learning rate must be a number"),
    ({"data_choice": "the internet"}, "The data must be one of"),
]


@pytest.mark.parametrize("changes, message", BAD_SETTINGS, ids=[m for _, m in BAD_SETTINGS])
def test_bad_settings_get_a_message_and_change_nothing(runner, tiny_registry, tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        start(runner, tiny_registry, "owner-four", write_table(tmp_path / "topics.csv"), **changes)
    assert runner.job_of("owner-four") is None and not runner.limits.runs_dir.exists()


def rezip(archive: str, dest: Path, edit=None, extra: dict[str, bytes] | None = None) -> Path:
    """The archive's members, `classifier.json` passed through `edit`, plus `extra` members."""
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(dest, "w") as out:
        for name in src.namelist():
            raw = src.read(name)
            if name == CLASSIFIER_CONFIG and edit is not None:
                config = json.loads(raw)
                edit(config)
                raw = json.dumps(config).encode()
            out.writestr(name, raw)
        for name, raw in (extra or {}).items():
            out.writestr(name, raw)
    return dest


def test_uploads_are_refused_clearly_and_leave_nothing_behind(runner, tiny_registry, tmp_path):
    archive = spam_tab.download_classifier(tiny_registry, "spam")  # the tiny shipped one: its base is `base`
    message, picker = spam_tab.upload_classifier(runner, tiny_registry, archive)
    assert "Loaded as" in message and picker.value in tiny_registry.classifier_names()
    before = sorted(runner.limits.runs_dir.iterdir())

    def elsewhere(config):
        config["base"] |= {"name": "run:not-here", "checkpoint": "../../not-here/model"}

    def other_weights(config):
        config["base"]["sha256"] = "0" * 64

    refused = [
        (rezip(archive, tmp_path / "extra.zip", extra={"notes.txt": b"hi"}), "unexpected file 'notes.txt'"),
        (rezip(archive, tmp_path / "escape.zip", extra={"../x": b"hi"}), "unsafe file name"),
        (rezip(archive, tmp_path / "elsewhere.zip", elsewhere), "base model 'run:not-here' is not on this server"),
        (rezip(archive, tmp_path / "other.zip", other_weights), "finetune again"),
        (write_bytes(tmp_path / "not.zip", b"PK but not a zip"), "not a zip file"),
        (big_file(tmp_path / "huge.zip"), "the limit is 20 MB"),
    ]
    for file, message in refused:
        with pytest.raises(ValueError, match=message):
            spam_tab.upload_classifier(runner, tiny_registry, str(file))
    assert sorted(runner.limits.runs_dir.iterdir()) == before
    with pytest.raises(ValueError, match="unknown classifier"):
        spam_tab.download_classifier(tiny_registry, "run:../../etc")


# -- the same through the app's named endpoints (gradio_client) ---------------------------------------

@pytest.fixture(scope="module")
def client(tiny_models: Path, serve_app, tmp_path_factory: pytest.TempPathFactory):
    """The app on the tiny models, as `python app.py` serves it."""
    from gradio_client import Client

    runner = JobRunner(TrainLimits(runs_dir=tmp_path_factory.mktemp("runs"), threads=1))
    return Client(serve_app(ModelRegistry(tiny_models), runner), verbose=False)


def test_finetune_watch_classify_list_download_and_upload_through_the_api(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    table = handle_file(str(write_table(tmp_path / "topics.csv", header=False)))
    settings = ["base", "first", "all layers", 1, 8, 16, 1, 1e-3, 1, spam_tab.FILE_DATA, table]
    with pytest.raises(AppError, match="unknown model 'spam'"):
        client.predict(None, "spam", *settings[1:], api_name="/spam_finetune_start")
    line, owner = client.predict(None, *settings, api_name="/spam_finetune_start")
    assert line.startswith("Started") and "all layers" in line and owner
    deadline = time.monotonic() + WAIT_S
    while not (out := client.predict(None, api_name="/spam_finetune_status"))[0].startswith("Finished"):
        assert time.monotonic() < deadline and "failed" not in out[0], out[0]
        time.sleep(0.5)
    name = re.search(r"### (run:[\w-]+)", out[2]).group(1)
    label, _, _ = client.predict("The blue team won the match", name, api_name="/classify")
    assert {c["label"] for c in label["confidences"]} == set(TOPICS)
    summary, _, _ = client.predict(name, api_name="/spam_test_figures")
    assert "the head reads the first token; trained: all layers" in summary
    table = client.predict(api_name="/spam_experiments")
    assert [row[0] for row in table["data"]] == ["spam", name]
    archive = client.predict(name, api_name="/spam_download")
    message, _ = client.predict(handle_file(archive), api_name="/spam_upload")
    assert "Loaded as `run:upload-" in message
    assert "Stopping" not in client.predict(None, api_name="/spam_finetune_status")[0]
    with pytest.raises(AppError, match="no finetuning running"):
        client.predict(None, api_name="/spam_finetune_stop")


def test_a_base_model_is_what_a_training_process_loads(tiny_registry, tiny_models):
    from gpt.config import GPTConfig
    from ui.registry import UnknownModelError

    base = tiny_registry.base_model("base")
    assert (base.name, base.source, base.config.n_layers) == ("base", str(tiny_models / "base"), 2)
    gpt2 = tiny_registry.base_model(" gpt2-small ")
    assert (gpt2.name, gpt2.source, gpt2.config) == ("gpt2-small", "gpt2-small", GPTConfig.preset("gpt2-small"))
    with pytest.raises(UnknownModelError, match="unknown model 'spam'"):
        tiny_registry.base_model("spam")
    with pytest.raises(ValueError, match="Pick a base model"):
        tiny_registry.base_model("  ")
