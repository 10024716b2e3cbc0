"""The library behind the 'see inside the model' views: logit lens, surprisal, embeddings, the KV cache's
cost, every beam of beam search, a model folder's history; and `python -m gpt generate --beams N`'s report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from gpt.cache_cost import cache_bytes, cache_shape, seconds_per_token, weights_bytes
from gpt.checkpoint import save_checkpoint
from gpt.cli import main
from gpt.config import PRESETS, GPTConfig
from gpt.embeddings import nearest_tokens, pca, position_similarity, project_tokens, vocabulary_sample
from gpt.files import ASSETS
from gpt.generate import SamplingConfig, beam_search, common_prefix, continuation_logprob, generate, search_beams
from gpt.lens import bits_by_word, logit_lens, residual_stream, surprisal_bits
from gpt.model import GPTModel
from gpt.model_card import read_history
from gpt.pretrained import load_gpt2_file
from gpt.tokenizer import TokenPiece, load_tokenizer
from gpt.training.loss import heldout_loss, lm_loss
from tests.helpers import PROMPTS, TINY

IDS = [5, 17, 3, 99, 250, 7, 7, 42, 300, 11]


# -- the logit lens ----------------------------------------------------------------------------

def test_logit_lens_at_the_last_layer_is_the_models_own_prediction(tiny_model: GPTModel) -> None:
    lens = logit_lens(tiny_model, IDS)
    with torch.no_grad():
        probs = torch.softmax(tiny_model(torch.tensor([IDS]))[0], dim=-1)  # (T, V)
    assert lens.top_ids.shape == (tiny_model.cfg.n_layers + 1, len(IDS))
    assert torch.equal(lens.top_ids[-1], probs.argmax(-1)) and torch.equal(lens.final_ids, probs.argmax(-1))
    torch.testing.assert_close(lens.top_probs[-1], probs.max(-1).values)
    assert torch.all(lens.final_ranks[-1] == 0)
    torch.testing.assert_close(lens.final_probs[-1], lens.top_probs[-1])
    assert torch.all(lens.final_ranks >= 0) and torch.all(lens.final_probs <= lens.top_probs + 1e-6)


def test_residual_stream_is_the_one_transformers_computes_for_gpt2(tiny_hf) -> None:
    """On GPT-2's layout: our stream after each block equals transformers' hidden states (it norms the last one)."""
    hf, weights = tiny_hf
    ours = load_gpt2_file(weights, TINY)
    ids = load_tokenizer("gpt2").encode(PROMPTS[1])
    with torch.no_grad():
        reference = hf(torch.tensor([ids]), output_hidden_states=True).hidden_states  # L+1 of (1, T, C)
        stream = residual_stream(ours, ids)
        torch.testing.assert_close(ours.final_norm(stream[-1]), reference[-1][0], atol=1e-4, rtol=1e-4)
    for layer in range(TINY.n_layers):
        torch.testing.assert_close(stream[layer], reference[layer][0], atol=1e-4, rtol=1e-4)


def test_logit_lens_refuses_nothing_and_too_much(tiny_model: GPTModel) -> None:
    with pytest.raises(ValueError, match="no tokens"):
        logit_lens(tiny_model, [])
    with pytest.raises(ValueError, match="exceed the context length"):
        logit_lens(tiny_model, [1] * (tiny_model.cfg.context_length + 1))


# -- surprisal -----------------------------------------------------------------------------------

def test_surprisal_sums_to_the_models_loss_on_the_text(tiny_model: GPTModel) -> None:
    bos = 0
    bits = surprisal_bits(tiny_model, IDS, bos)
    assert bits.shape == (len(IDS),) and torch.all(bits > 0)
    with torch.no_grad():
        loss = lm_loss(tiny_model(torch.tensor([[bos] + IDS[:-1]])), torch.tensor([IDS]))
    assert math.isclose(float(bits.sum()) * math.log(2) / len(IDS), float(loss), rel_tol=1e-5)
    mean, count = heldout_loss(tiny_model, np.array([bos] + IDS))
    assert count == len(IDS) and math.isclose(float(bits.mean()) * math.log(2), mean, rel_tol=1e-5)


def test_surprisal_of_a_padded_vocabulary_leaves_the_padding_out(tiny_model: GPTModel) -> None:
    full, cut = surprisal_bits(tiny_model, IDS, 0), surprisal_bits(tiny_model, IDS, 0, vocab_size=400)
    assert torch.all(cut < full)  # the same logits, fewer rows to share the probability with


def test_bits_by_word_gives_each_token_to_its_word() -> None:
    text = "The  cat\nsat."
    pieces = [TokenPiece(0, b"The", 0, 3), TokenPiece(1, b" ", 3, 4), TokenPiece(2, b" cat", 4, 8),
              TokenPiece(3, b"\n", 8, 9), TokenPiece(4, b"sat", 9, 12), TokenPiece(5, b".", 12, 13)]
    spans = bits_by_word(text, pieces, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    assert [(text[s.start:s.end], s.bits) for s in spans] == [("The", 1.0), ("cat", 6.0), ("sat.", 56.0)]
    assert bits_by_word("   ", [TokenPiece(0, b"   ", 0, 3)], [1.0]) == []


def test_words_make_two_tokenizers_comparable(tiny_model: GPTModel) -> None:
    text = "It is a truth universally acknowledged, that a single man"
    gpt2 = load_tokenizer("gpt2")
    chars = [TokenPiece(ord(c) % 512, c.encode(), i, i + 1) for i, c in enumerate(text)]
    words = [bits_by_word(text, pieces, [1.0] * len(pieces)) for pieces in (gpt2.pieces(text), chars)]
    assert [(w.start, w.end) for w in words[0]] == [(w.start, w.end) for w in words[1]]
    assert sum(w.bits for w in words[0]) == len(gpt2.encode(text)) and sum(w.bits for w in words[1]) == len(text)


# -- embeddings ----------------------------------------------------------------------------------

def test_pca_finds_the_direction_of_most_variance() -> None:
    gen = torch.Generator().manual_seed(0)
    direction = torch.tensor([3.0, 4.0, 0.0]) / 5
    rows = torch.randn(200, 1, generator=gen) * 10 * direction + torch.randn(200, 3, generator=gen) * 0.1
    coords = pca(rows, 2)
    assert coords.shape == (200, 2)
    assert coords[:, 0].var() > 100 * coords[:, 1].var()
    assert torch.allclose(coords.mean(0), torch.zeros(2), atol=1e-4)


def test_nearest_tokens_and_the_sample(tiny_model: GPTModel) -> None:
    with torch.no_grad():
        tiny_model.tok_emb.weight[10] = tiny_model.tok_emb.weight[20] * 3  # same direction, another length
    neighbours, of_ten = nearest_tokens(tiny_model, [20, 10], k=5)
    assert of_ten[0][0] == 20
    assert neighbours[0][0] == 10 and math.isclose(neighbours[0][1], 1.0, rel_tol=1e-5)
    assert 20 not in [i for i, _ in neighbours] and len(neighbours) == 5
    assert [c for _, c in neighbours] == sorted((c for _, c in neighbours), reverse=True)
    sample = vocabulary_sample(512, 100)
    assert sample == vocabulary_sample(512, 100) and len(set(sample)) == 100 and sample == sorted(sample)
    assert project_tokens(tiny_model, sample, 3).shape == (100, 3)


def test_position_similarity_learned_band_and_sinusoidal_stripes() -> None:
    torch.manual_seed(0)
    learned = GPTModel(GPTConfig.preset("tiny"))
    sim, positions = position_similarity(learned)
    assert sim.shape == (64, 64) and positions == list(range(64))
    torch.testing.assert_close(sim.diagonal(), torch.ones(64))
    sinusoidal = GPTModel(GPTConfig.preset("tiny", positions="sinusoidal", context_length=512))
    sim, positions = position_similarity(sinusoidal, max_positions=128)
    assert positions == list(range(0, 512, 4))
    # The same offset gives the same similarity anywhere in the window: constant along each diagonal.
    torch.testing.assert_close(sim[:-7, 7:].diagonal(), sim[0, 7].expand(121), atol=1e-5, rtol=0)


# -- the KV cache's cost ---------------------------------------------------------------------------

def test_cache_shape_and_bytes_are_those_of_a_real_cache(tiny_model: GPTModel) -> None:
    cfg = tiny_model.cfg
    cache = tiny_model.new_cache(1)
    with torch.no_grad():
        tiny_model(torch.tensor([IDS]), cache)
    filled = cache.keys[:, :, :, : cache.pos]
    assert cache_shape(cfg, len(IDS)) == tuple(filled.shape)
    assert cache_bytes(cfg, len(IDS)) == 2 * filled.nbytes
    assert cache_bytes(cfg, cfg.context_length) == cache.keys.nbytes + cache.values.nbytes
    assert weights_bytes(cfg) == sum(p.nbytes for p in tiny_model.parameters())  # the tied head counts once


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_weights_plus_full_cache_is_the_configs_memory_estimate(name: str, dtype: str) -> None:
    cfg = PRESETS[name]
    assert weights_bytes(cfg, dtype) + cache_bytes(cfg, cfg.context_length, dtype) == cfg.memory_bytes(dtype)
    assert cache_bytes(cfg, 100, dtype, batch_size=4) == 4 * cache_bytes(cfg, 100, dtype)


def test_seconds_per_token_with_and_without_the_cache(tiny_model: GPTModel) -> None:
    for use_cache in (True, False):
        assert 0 < seconds_per_token(tiny_model, IDS, 4, use_cache) < 5
    with pytest.raises(ValueError, match="at least 2"):
        seconds_per_token(tiny_model, IDS, 1, True)


# -- every beam -------------------------------------------------------------------------------------

@pytest.mark.parametrize("eot", [None, "first greedy token"])
def test_beam_width_one_is_greedy(tiny_model: GPTModel, eot) -> None:
    greedy_cfg = SamplingConfig(max_new_tokens=12, temperature=0)
    eot_id = generate(tiny_model, IDS, greedy_cfg)[3] if eot else None  # greedy's 4th token ends the text
    greedy = generate(tiny_model, IDS, greedy_cfg, eot_id=eot_id)
    assert beam_search(tiny_model, IDS, 1, 12, eot_id=eot_id) == greedy
    (only,) = search_beams(tiny_model, IDS, 1, 12, eot_id=eot_id)
    assert only.tokens == greedy and only.ended == (eot_id is not None)


def test_beams_are_ranked_and_scored_by_their_log_probability(tiny_model: GPTModel) -> None:
    found = search_beams(tiny_model, IDS, 4, 6)
    assert len(found) == 4 and found[0].tokens == beam_search(tiny_model, IDS, 4, 6)
    assert [b.score for b in found] == sorted((b.score for b in found), reverse=True)
    for beam in found:
        assert math.isclose(beam.logprob, continuation_logprob(tiny_model, IDS, beam.tokens), rel_tol=1e-4)
        assert math.isclose(beam.score, beam.logprob / len(beam.tokens), rel_tol=1e-9)
    assert len({tuple(b.tokens) for b in found}) == 4


def test_continuation_logprob_is_the_sum_of_each_tokens_log_probability(tiny_model: GPTModel) -> None:
    tokens = [8, 9, 10]
    with torch.no_grad():
        logprobs = torch.log_softmax(tiny_model(torch.tensor([IDS + tokens]))[0], dim=-1)
    expected = sum(float(logprobs[len(IDS) - 1 + i, t]) for i, t in enumerate(tokens))
    assert math.isclose(continuation_logprob(tiny_model, IDS, tokens), expected, rel_tol=1e-5)
    assert continuation_logprob(tiny_model, IDS, []) == 0.0
    with pytest.raises(ValueError, match="exceed the context length"):
        continuation_logprob(tiny_model, IDS, [1] * 64)


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2 and common_prefix([], [1]) == 0 and common_prefix([5], [6]) == 0


def test_cli_beams_report_every_beam_greedy_and_sampled_on_stderr(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    model, tokenizer = GPTModel(TINY).eval(), load_tokenizer("gpt2")
    save_checkpoint(model, tmp_path / "ckpt", tokenizer)
    prompt = PROMPTS[0]
    assert main(["generate", "--model", str(tmp_path / "ckpt"), "--prompt", prompt, "--beams", "3",
                 "--max-new-tokens", "6", "--seed", "1"]) == 0
    out, err = capsys.readouterr()
    found = search_beams(model, tokenizer.encode(prompt), 3, 6, eot_id=tokenizer.eot_id, vocab_size=tokenizer.n_vocab)
    assert out == prompt + tokenizer.decode(found[0].tokens) + "\n"
    lines = err.splitlines()
    assert lines[0].startswith("3 beams, best first") and f"score {found[0].score:.3f}" in lines[1]
    split = common_prefix(found[1].tokens, found[0].tokens)
    assert f"splits from the best at new token {split + 1}" in lines[2]
    assert lines[4].startswith("greedy: ") and lines[5].startswith("sampled (temperature 1, seed 1): ")


# -- how a model was made ----------------------------------------------------------------------------

def test_history_of_the_shipped_models() -> None:
    base = read_history(ASSETS / "models" / "base")
    assert base.card.startswith("# base") and base.log[0]["step"] == 1 and base.loss_figure_json
    assert base.metrics["held_out_bits_per_byte"] < min(base.metrics["baselines"].values())
    instruct = read_history(ASSETS / "models" / "instruct")
    assert instruct.evaluation["n"] > 0 and instruct.meta["train_losses"] and not instruct.log
    spam = read_history(ASSETS / "models" / "spam")
    assert spam.test_metrics and all(0 < m.accuracy <= 1 for m in spam.test_metrics.values())


def test_history_of_a_run_reads_the_folder_around_the_model(tmp_path, tiny_model) -> None:
    run = tmp_path / "run"
    save_checkpoint(tiny_model, run / "model", load_tokenizer("gpt2"), meta={"steps": 3})
    (run / "MODEL_CARD.md").write_text("# a run")
    (run / "log.csv").write_text("step,tokens_seen,train_loss\n1,64,5.5\n2,128,5.0\n")
    (run / "model" / "eval.json").write_text(json.dumps({"weights_sha256": "not these weights", "n": 3}))
    history = read_history(run / "model", run)
    assert history.card == "# a run" and [r["train_loss"] for r in history.log] == [5.5, 5.0]
    assert history.evaluation is None and history.meta == {"steps": 3}  # an evaluation of other weights is not shown
    assert read_history(run / "model").card is None
    assert read_history(tmp_path / "nothing") == read_history(tmp_path)  # nothing at all: every field empty
