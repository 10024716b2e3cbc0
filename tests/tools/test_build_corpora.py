"""The builder of the modern corpora: each source read into named documents, written as JSON lines in xz."""

from __future__ import annotations

from gpt.data.corpus import modern_documents
from tools.build_corpora import SOURCES, write_jsonl_xz


def make_sources(root):
    (root / "wiki_vital.txt").write_text("Apple\n\nAn apple is a fruit.\n\nBanana\n\nA banana is long.\n")
    (root / "recipes.txt").write_text("Tea\nIngredients:\n- water\nSteps:\n1. Boil.\n\nToast\nSteps:\n1. Heat bread.\n")
    (root / "sotu").mkdir()
    (root / "sotu" / "1790-george-washington.txt").write_text("Fellow citizens.\n")
    (root / "sotu" / "2021-joseph-r-biden.txt").write_text("Madam Speaker.\n")
    (root / "brown").mkdir()
    (root / "brown" / "ca01.txt").write_text("The jury said.\n\nIt was late.\n")
    (root / "wordnet_glosses.txt").write_text("dog, domestic dog: a canine\ndog: a dull person\nhot dog: food\n"
                                              "cat: a feline; \"the cat sat\"\n")
    (root / "fortunes.txt").write_text("    A fortune\n  spread   over lines.\n%\nSecond one.\n%\n")
    (root / "chatterbot.tsv").write_text("Hi\tHello there\nHow are you?\tFine,\\nthanks\n")


def test_every_source_becomes_named_documents_read_back_by_the_corpus(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    make_sources(src)
    for name, read in SOURCES.items():
        write_jsonl_xz(out / f"{name}.jsonl.xz", read(src))
    docs = {name: modern_documents(name, out) for name in SOURCES}
    assert [(d.name, d.text) for d in docs["wiki"]] == [("wiki-Apple", "Apple\n\nAn apple is a fruit."),
                                                         ("wiki-Banana", "Banana\n\nA banana is long.")]
    assert [d.name for d in docs["recipes"]] == ["recipes-Tea", "recipes-Toast"]
    assert [d.name for d in docs["sotu"]] == ["sotu-2021-joseph-r-biden"]  # the post-war addresses only
    assert docs["brown"][0].text == "The jury said.\n\nIt was late."
    assert docs["glosses"][0].text == "dog, domestic dog: a canine\ncat: a feline; \"the cat sat\""  # 1st gloss a word
    assert docs["fortunes"][0].text == "A fortune\nspread over lines.\n\nSecond one."
    assert docs["chatterbot"][0].text == "Hi\nHello there\n\nHow are you?\nFine,\nthanks"


def test_the_same_input_gives_the_same_bytes(tmp_path):
    make_sources(tmp_path)
    write_jsonl_xz(tmp_path / "a.jsonl.xz", SOURCES["wiki"](tmp_path))
    write_jsonl_xz(tmp_path / "b.jsonl.xz", SOURCES["wiki"](tmp_path))
    assert (tmp_path / "a.jsonl.xz").read_bytes() == (tmp_path / "b.jsonl.xz").read_bytes()
