"""Classifier archives: a round trip, and an upload that cannot be verified refused whole."""

from __future__ import annotations

import json
import zipfile

import pytest

from gpt.archive import ArchiveError
from gpt.classify.archive import read_classifier_archive, write_classifier_archive
from gpt.classify.classifier import CLASSIFIER_CONFIG, CLASSIFIER_WEIGHTS, load_classifier


def members_of(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


def zipped(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_a_classifier_round_trips_through_its_archive(saved_classifier, base_dir, tmp_path):
    archive = write_classifier_archive(saved_classifier, tmp_path / "clf.zip")
    folder = read_classifier_archive(archive, tmp_path / "uploads" / "clf", lambda ref: base_dir)
    text = "WIN a FREE prize now"
    assert load_classifier(folder).predict(text) == load_classifier(saved_classifier).predict(text)


@pytest.mark.parametrize("how, message", [
    ("checksum removed", "the archive/classifier.json records no sha256 checksums"),
    ("tensors flipped", "the archive/classifier.safetensors: the file is damaged or was changed after saving"),
])
def test_an_upload_that_cannot_be_verified_is_refused(saved_classifier, base_dir, tmp_path, how, message):
    members = members_of(saved_classifier)
    if how == "checksum removed":
        config = json.loads(members[CLASSIFIER_CONFIG])
        del config["sha256"]
        members[CLASSIFIER_CONFIG] = json.dumps(config).encode()
    else:
        members[CLASSIFIER_WEIGHTS] = members[CLASSIFIER_WEIGHTS][:-2000] + bytes(
            b ^ 0xFF for b in members[CLASSIFIER_WEIGHTS][-2000:])
    dest = tmp_path / "uploads" / "clf"
    with pytest.raises(ArchiveError, match=message) as err:
        read_classifier_archive(zipped(tmp_path / "clf.zip", members), dest, lambda ref: base_dir)
    assert "\n" not in str(err.value) and not dest.exists()
