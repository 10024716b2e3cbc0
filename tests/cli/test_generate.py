"""`python -m gpt generate`: streaming text from GPT-2 weights or a checkpoint folder, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from gpt.checkpoint import save_checkpoint
from gpt.cli import main
from gpt.cli.generate import stream_text
from gpt.generate import SamplingConfig, beam_search, generate
from gpt.model import GPTModel
from gpt.tokenizer import load_tokenizer
from tests.helpers import PROMPTS, REPO, TINY, TINY_NAME


def test_greedy_output_is_transformers_greedy_text(tiny_cached, tiny_hf, capsys):
    prompt, n_new = PROMPTS[1], 12
    assert main(["generate", "--model", TINY_NAME, "--prompt", prompt, "--temperature", "0",
                 "--max-new-tokens", str(n_new)]) == 0
    tokenizer = load_tokenizer("gpt2")
    ids = tokenizer.encode(prompt)
    reference = tiny_hf[0].generate(torch.tensor([ids]), max_new_tokens=n_new, min_new_tokens=n_new,
                                    do_sample=False, pad_token_id=0)[0, len(ids):].tolist()
    out = capsys.readouterr()
    assert out.out == prompt + tokenizer.decode(reference) + "\n"
    assert out.err.startswith(f"{TINY_NAME}: 2M parameters, needs at least")


def test_weights_file_needs_no_cache(offline_hub, tiny_hf, capsys):
    args = ["generate", "--model", TINY_NAME, "--prompt", PROMPTS[0], "--seed", "7", "--top-k", "40",
            "--top-p", "0.9", "--max-new-tokens", "8", "--weights", str(tiny_hf[1])]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.startswith(PROMPTS[0]) and len(first) > len(PROMPTS[0]) + 1


def test_checkpoint_folder(tmp_path, capsys):
    torch.manual_seed(0)
    model, tokenizer = GPTModel(TINY).eval(), load_tokenizer("gpt2")
    save_checkpoint(model, tmp_path / "ckpt", tokenizer)
    prompt = PROMPTS[2]
    assert main(["generate", "--model", str(tmp_path / "ckpt"), "--prompt", prompt, "--seed", "3",
                 "--max-new-tokens", "10", "--temperature", "0.8"]) == 0
    sampling = SamplingConfig(max_new_tokens=10, temperature=0.8, seed=3)
    expected = generate(model, tokenizer.encode(prompt), sampling, eot_id=tokenizer.eot_id)
    assert capsys.readouterr().out == prompt + tokenizer.decode(expected) + "\n"


def test_beams_print_the_beam_search_continuation(tmp_path, capsys):
    tokenizer = load_tokenizer("gpt2")
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    save_checkpoint(model, tmp_path / "ckpt", tokenizer)
    prompt = PROMPTS[0]
    assert main(["generate", "--model", str(tmp_path / "ckpt"), "--prompt", prompt, "--beams", "3",
                 "--max-new-tokens", "8"]) == 0
    expected = beam_search(model, tokenizer.encode(prompt), 3, 8, eot_id=tokenizer.eot_id,
                           vocab_size=tokenizer.n_vocab)
    assert capsys.readouterr().out == prompt + tokenizer.decode(expected) + "\n"


@pytest.mark.parametrize("args, message", [
    (["--model", "gpt2-small", "--top-p", "1.5"], "error: top_p must be in (0, 1], got 1.5"),
    (["--model", "gpt2-small", "--prompt", ""], "error: --prompt is empty"),
    (["--model", "gpt5"], "error: model 'gpt5' is none of gpt2-small, gpt2-medium"),
    (["--model", "assets", "--weights", "x.safetensors"], "error: a weights file goes with a GPT-2 size"),
    (["--model", "gpt2-small", "--beams", "-1"], "error: --beams must be >= 0"),
    (["--model", "gpt2-small", "--device", "tpu"], "error: --device tpu: not available here"),
])
def test_bad_arguments_fail_before_loading(args, message, capsys):
    if "--prompt" not in args:
        args = [*args, "--prompt", "hello"]
    assert main(["generate", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1  # one line, nothing loaded or described


def test_wrong_weights_file_names_the_tensor(offline_hub, tiny_hf, capsys):
    assert main(["generate", "--model", "gpt2-small", "--prompt", "hi", "--weights", str(tiny_hf[1])]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("gpt2-small: 124M parameters")
    assert err[1].startswith(f"error: {tiny_hf[1]} (GPT-2 Hub layout") and "tensor 'tok_emb.weight' has shape" in err[1]


def test_offline_without_cache_is_one_line_in_a_real_process(tmp_path):
    """HF_HUB_OFFLINE and HF_HUB_CACHE as a user sets them: in the environment, before the hub is imported."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "gpt", "generate", "--model", "gpt2-large", "--prompt", "Hello"],
                          env=env, capture_output=True, text=True, timeout=600)  # a hang guard, not a limit
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("gpt2-large: 774M parameters, needs at least")
    assert lines[1] == (
        f"error: gpt2-large: openai-community/gpt2-large/model.safetensors is not in the Hugging Face cache "
        f"({tmp_path / 'models--openai-community--gpt2-large'}) and HF_HUB_OFFLINE is set; on a machine with "
        f"internet run `hf download openai-community/gpt2-large model.safetensors` and copy the cache here, or pass "
        f"--weights PATH to a local copy of that file")


def test_stream_text_waits_for_whole_characters():
    tokenizer = load_tokenizer("gpt2")
    text = "Héllo 🙂 wörld 漢字"
    ids = tokenizer.encode(text)
    undecodable = [i for i in ids if not _is_utf8(tokenizer.decode_bytes([i]))]
    assert undecodable  # some characters really are split across tokens
    pieces = list(stream_text(tokenizer, ids))
    assert "".join(pieces) == text and "\ufffd" not in "".join(pieces)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
