"""The SMS spam data: parsing, the offline copy, balancing, the seeded split, padding, the cached download."""

from __future__ import annotations

import io
import random
import zipfile
from collections import Counter

import pytest
from torch.utils.data import DataLoader

from gpt.classify import data
from gpt.classify.classifier import METRICS_FILE, SHIPPED_DIR, parse_test_metrics
from gpt.classify.data import Message
from gpt.training.loop import PAD_MULTIPLE
from tests.helpers import LocalServer


def collection_zip(tsv: str, member: str = data.UCI_MEMBER) -> bytes:
    """A zip laid out like UCI's: the tab-separated file and a readme."""
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as archive:
        archive.writestr(member, tsv)
        archive.writestr("readme", "the collection")
    return payload.getvalue()


def test_parse_tsv_reads_labels_and_refuses_other_lines():
    messages = data.parse_tsv("ham\thello there\nspam\tWIN a prize\n\n", "x")
    assert messages == (Message("hello there", 0), Message("WIN a prize", 1))
    with pytest.raises(ValueError, match="line 2"):
        data.parse_tsv("ham\tok\nmaybe\tnot a label\n", "x")


def test_offline_copy_is_the_documented_part(corpus):
    counts = Counter(m.label for m in corpus.messages)
    assert (counts[0], counts[1]) == (4220, 642)
    assert corpus.kind == "offline" and "4862" in corpus.source


def test_balance_undersamples_ham_to_the_spam_count(corpus):
    balanced = data.balance(corpus.messages, seed=1)
    counts = Counter(m.label for m in balanced)
    assert counts[0] == counts[1] == 642
    assert {m for m in balanced if m.label == 1} == {m for m in corpus.messages if m.label == 1}
    assert set(balanced) <= set(corpus.messages)
    assert data.balance(corpus.messages, seed=1) == balanced
    assert data.balance(corpus.messages, seed=2) != balanced


def test_balanced_split_is_the_books_seeded_70_10_20_and_disjoint(corpus):
    balanced = data.balance(corpus.messages)
    parts = data.balanced_split(corpus)
    n = len(balanced)
    assert (len(parts.train), len(parts.val)) == (int(n * 0.7), int(n * 0.1)) == (898, 128)
    assert len(parts.test) == n - 898 - 128 == 258
    assert Counter(parts.train + parts.val + parts.test) == Counter(balanced)  # every message in exactly one part
    shuffled = list(balanced)  # the cut the shipped classifier was made with: one shuffle, then train|val|test
    random.Random(data.SPLIT_SEED).shuffle(shuffled)
    assert parts.train + parts.val + parts.test == tuple(shuffled)
    assert data.balanced_split(corpus) == parts
    assert data.balanced_split(corpus, seed=5).train != parts.train


def test_the_shipped_classifier_is_measured_on_these_test_messages(corpus):
    """Its stored examples are test messages of each class in test order (the first it labels right), and
    the supports match."""
    stored = parse_test_metrics((SHIPPED_DIR / METRICS_FILE).read_text())[data.SMS_TEST]
    test = data.balanced_split(corpus).test
    assert stored.n_test == len(test)
    for c, label in enumerate(data.LABELS):
        of_class = [m.text for m in test if m.label == c]
        positions = [of_class.index(text) for text in stored.examples[label]]
        assert positions == sorted(positions)
        assert stored.per_class[label]["support"] == len(of_class)


def test_dataset_truncates_to_the_context_and_pads_batches_with_end_of_text(tokenizer):
    messages = [Message("hi", 0), Message("free entry " * 40, 1), Message("call me later ok", 0)]
    dataset = data.SpamDataset(messages, tokenizer, context_length=16)
    lengths = [len(dataset[i][0]) for i in range(3)]
    assert lengths == [len(tokenizer.encode("hi")), 16, len(tokenizer.encode("call me later ok"))]
    ids, labels = next(iter(DataLoader(dataset, batch_size=3, collate_fn=dataset.collate)))
    assert ids.shape == (3, 16) and labels.tolist() == [0, 1, 0]
    assert ids[0, lengths[0]:].eq(tokenizer.eot_id).all() and not ids[0, :lengths[0]].eq(tokenizer.eot_id).any()
    assert ids[1].ne(tokenizer.eot_id).all()
    short = data.SpamDataset(messages[::2], tokenizer, context_length=256)  # a few shapes: lengths round up
    ids, _ = next(iter(DataLoader(short, batch_size=2, collate_fn=short.collate)))
    assert ids.shape == (2, PAD_MULTIPLE)
    assert ids[1, len(short[1][0]):].eq(tokenizer.eot_id).all()


def test_download_is_cached_and_auto_falls_back_to_the_offline_copy(tmp_path, corpus):
    body = collection_zip("ham\tsee you soon\nspam\tFREE tones! txt 8007\n")
    with LocalServer(body) as server:
        url = f"{server.url}/sms.zip"
        first = data.load_corpus("download", url=url, cache_dir=tmp_path)
        again = data.load_corpus("auto", url=url, cache_dir=tmp_path)
        assert server.requests == 1  # the second load came from the cache
    assert first.kind == "download"
    assert first.messages == (Message("see you soon", 0), Message("FREE tones! txt 8007", 1))
    assert again == first

    fallback = data.load_corpus("auto", url=url, cache_dir=tmp_path / "empty")  # the server is gone
    assert fallback.kind == "offline" and fallback.messages == corpus.messages
    with pytest.raises(FileNotFoundError, match="could not download"):
        data.load_corpus("download", url=url, cache_dir=tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown data source"):
        data.load_corpus("somewhere")


@pytest.mark.parametrize("broken", [b"<html>down for maintenance</html>", collection_zip("ham\thi\n", "other")])
def test_a_download_that_is_not_the_collection_is_refused_and_not_kept(tmp_path, corpus, broken):
    with LocalServer(broken) as server:
        url = f"{server.url}/sms.zip"
        assert data.load_corpus("auto", url=url, cache_dir=tmp_path).kind == "offline"
        with pytest.raises(FileNotFoundError, match="could not download"):
            data.load_corpus("download", url=url, cache_dir=tmp_path)
        assert server.requests == 2
    with LocalServer(collection_zip("spam\tWIN now\n")) as server:
        fixed = data.load_corpus("download", url=f"{server.url}/sms.zip", cache_dir=tmp_path)
        assert server.requests == 1  # downloaded again: the broken file was not cached
    assert fixed.messages == (Message("WIN now", 1),)


# -- the data mixes ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mixed() -> data.DataMix:
    return data.load_mix("mixed", "offline")


def test_the_sms_mix_is_the_books_split_measured_on_every_test_set(corpus, mixed):
    """It trains on SMS alone, and is tested where the mixed data is: how far SMS alone carries."""
    sms, parts = data.load_mix("sms", "offline"), data.balanced_split(corpus)
    assert (sms.train, sms.val) == (parts.train, parts.val)
    assert sms.tests == mixed.tests and sms.tests[0] == data.EvaluationSet(data.SMS_TEST, parts.test, corpus.source)
    assert sms.sizes() == {"train": 898, "val": 128, "test": 258 + 634 + 250}
    counts = {name: (part["train"], part["val"], part["test"]) for name, part in sms.parts.items()}
    assert counts == {"sms": (898, 128, 258), "spamassassin": (0, 0, 634), "modern": (0, 0, 250)}
    with pytest.raises(ValueError, match="unknown data mix"):
        data.load_mix("everything")


def test_the_mixed_data_keeps_the_sms_split_and_adds_each_part_apart(corpus, mixed):
    sms = data.balanced_split(corpus)
    tests = {s.name: s.messages for s in mixed.tests}
    assert list(tests) == [data.SMS_TEST, data.SPAMASSASSIN_TEST, data.MODERN_TEST]
    assert tests[data.SMS_TEST] == sms.test  # the SMS test messages of every classifier before the mix
    assert mixed.train[:898] == sms.train and mixed.val[:128] == sms.val
    modern = data.load_modern(data.MODERN_TRAIN).messages
    modern_split = data.seeded_split(modern, data.MODERN_FRACTIONS, data.SPLIT_SEED)
    n_modern, n_modern_val = len(modern_split.train), len(modern_split.val)
    counts = {name: {k: v for k, v in part.items() if k != "source"} for name, part in mixed.parts.items()}
    assert counts == {"sms": {"train": 898 + data.SMS_EXTRA_HAM, "val": 128, "test": 258,
                              "extra_ham": data.SMS_EXTRA_HAM},
                      "spamassassin": {"train": data.SPAMASSASSIN_TRAIN, "val": data.SPAMASSASSIN_VAL, "test": 634},
                      "modern": {"train": n_modern, "val": n_modern_val, "test": 250}}
    assert mixed.sizes() == {"train": 898 + 600 + n_modern + data.SMS_EXTRA_HAM, "val": 128 + 100 + n_modern_val,
                             "test": 258 + 634 + 250}
    sa = data.balanced_split(data.load_spamassassin())
    assert tests[data.SPAMASSASSIN_TEST] == sa.test
    assert mixed.train[898:1498] == sa.train[:600] and mixed.val[128:228] == sa.val[:100]
    modern_end = 1498 + n_modern
    assert {m.text for m in mixed.train[1498:modern_end] + mixed.val[228:]} == {m.text for m in modern}
    assert tests[data.MODERN_TEST] == data.load_modern(data.MODERN_HELDOUT).messages
    extra = mixed.train[modern_end:]
    assert extra == data.left_out_ham(corpus, sms, data.SMS_EXTRA_HAM)
    assert len(extra) == data.SMS_EXTRA_HAM and all(m.label == data.LABELS.index("ham") for m in extra)
    assert set(extra) <= set(corpus.messages) and len({m.text for m in extra}) == len(extra)
    spam_share = sum(m.label for m in mixed.val) / len(mixed.val)  # validation stays balanced
    assert 0.45 < spam_share < 0.55
    spam_share = sum(m.label for m in mixed.train) / len(mixed.train)  # training leans to ham by the extra ham only
    assert 0.35 < spam_share < 0.45


def test_the_extra_ham_is_what_the_balancing_left_out():
    """Never a text of the balanced split (its repeats included), never twice, at most what there is."""
    ham, spam = data.LABELS.index("ham"), data.LABELS.index("spam")
    messages = tuple([data.Message(f"hi {i}", ham) for i in range(30)] + [data.Message(f"win {i}", spam)
                                                                          for i in range(10)]
                     + [data.Message("hi 0", ham), data.Message("hi 0", ham)])  # repeats of a ham text
    corpus = data.SpamCorpus(messages, "offline", "made up")
    split = data.balanced_split(corpus)
    taken = {m.text for part in (split.train, split.val, split.test) for m in part}
    extra = data.left_out_ham(corpus, split, 1000)
    assert {m.text for m in extra} == {m.text for m in messages if m.label == ham} - taken
    assert len(extra) == len({m.text for m in extra}) and all(m.label == ham for m in extra)
    three = data.left_out_ham(corpus, split, 3)
    assert len(three) == 3 and set(three) <= set(extra) and three == data.left_out_ham(corpus, split, 3)  # seeded
    assert data.left_out_ham(corpus, split, 0) == ()


def test_no_test_message_is_trained_or_validated_on(corpus, mixed):
    """Nothing the mix adds is in a test set. The SMS collection repeats some messages, and the book's split
    keeps the repeats: 28 SMS test messages are also in its train or validation split, as they always were."""
    seen = {m.text for m in mixed.train + mixed.val}
    sms = data.balanced_split(corpus)
    sms_seen = {m.text for m in sms.train + sms.val}
    tests = {s.name: {m.text for m in s.messages} for s in mixed.tests}
    assert len(seen & tests[data.SMS_TEST]) == len(sms_seen & tests[data.SMS_TEST]) == 28
    assert not seen & tests[data.SPAMASSASSIN_TEST] and not seen & tests[data.MODERN_TEST]
    assert data.load_mix("mixed", "offline") == mixed  # seeded: the same every time


def test_spamassassin_cells_and_lines(tmp_path):
    text = "Subject: a \\ b\nline two"
    assert data.escape_cell(text) == "Subject: a \\\\ b\\nline two"
    assert data.unescape_cell(data.escape_cell(text)) == text
    good = tmp_path / "sa.tsv"
    good.write_text(f"ham\teasy-ham-1\t{data.escape_cell(text)}\nspam\tspam-2\tSubject: WIN\n")
    corpus = data.load_spamassassin(good)
    assert corpus.messages == (Message(text, 0), Message("Subject: WIN", 1)) and "2 mails" in corpus.source
    for broken in ("ham\tSubject: no group\n", "junk\tg\ttext\n", "ham\tg\ta\tb\n"):
        good.write_text(broken)
        with pytest.raises(ValueError, match="line 1"):
            data.load_spamassassin(good)
