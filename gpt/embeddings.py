"""What the embedding tables hold (the book's chapter 2): tokens as points, their neighbours, and positions.

A token's embedding is a row of `tok_emb`; in a trained model, tokens used alike end up near each
other. Cosine similarity measures 'near' by direction, whatever a row's length. PCA flattens the
rows onto the two or three directions along which they differ most, so a screen can show them.
"""

from __future__ import annotations

import torch

from gpt.model import GPTModel


def pca(rows: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C) -> (N, k): each row's coordinates along the k directions of most variance (exact SVD)."""
    centred = rows.float() - rows.float().mean(0)
    _, _, directions = torch.linalg.svd(centred, full_matrices=False)  # (min(N, C), C), by variance
    return centred @ directions[:k].T


def vocabulary_sample(vocab_size: int, n: int, seed: int = 0) -> list[int]:
    """`n` token ids drawn without replacement, the same ones every time (a seeded permutation)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(vocab_size, generator=gen)[:n].sort().values.tolist()


@torch.inference_mode()
def project_tokens(model: GPTModel, ids: list[int], k: int = 2) -> torch.Tensor:
    """(len(ids), k): the directions of the tokens' embeddings (rows scaled to length 1, as cosine similarity
    sees them) on their own top-k principal directions.

    Unscaled, the long rows of bytes that training never showed (they are only ever pushed down, the same
    way) take the first direction for themselves and squeeze every word into one blob.
    """
    rows = model.tok_emb.weight[ids].float()
    return pca(rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-12), k)


@torch.inference_mode()
def nearest_tokens(model: GPTModel, token_ids: list[int], k: int = 8, vocab_size: int | None = None
                   ) -> list[list[tuple[int, float]]]:
    """For each token, the `k` tokens whose embeddings point most nearly the same way: (id, cosine), nearest first."""
    table = model.tok_emb.weight[:vocab_size].float()  # (V, C)
    unit = table / table.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cosines = unit[token_ids] @ unit.T  # (n, V)
    cosines[range(len(token_ids)), token_ids] = -2.0  # a token is its own nearest neighbour: leave it out
    top = cosines.topk(min(k, cosines.shape[1] - 1), dim=-1)
    return [list(zip(i, c, strict=True)) for i, c in zip(top.indices.tolist(), top.values.tolist(), strict=True)]


@torch.inference_mode()
def position_similarity(model: GPTModel, max_positions: int = 256) -> tuple[torch.Tensor, list[int]]:
    """Cosine similarity between positions, (P, P), over at most `max_positions` evenly spaced positions.

    Learned positions (GPT-2) show a band: neighbouring positions look alike. The sinusoidal table
    shows stripes: every position is a rotation of the others, by the same angle for the same offset.
    Rotary positions add no vector to the tokens: a position is its rotation instead, the (cos, sin) of a
    head's angles. Two rotations' similarity is the mean cos of their angle differences (what a key
    gets from an equal query), the same for the same offset anywhere.
    """
    ctx = model.cfg.context_length
    step = -(-ctx // max_positions)  # ceil: GPT-2's 1,024 positions become 256, every fourth
    positions = list(range(0, ctx, step))
    if model.cfg.positions == "rotary":
        vectors = torch.cat((model.rope_cos[positions], model.rope_sin[positions]), dim=-1).float()  # (P, hd)
    else:
        vectors = model.position_vectors(torch.tensor(positions, device=model.tok_emb.weight.device)).float()
    unit = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return unit @ unit.T, positions
