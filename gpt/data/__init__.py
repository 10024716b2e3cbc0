"""Data files turned into model inputs: the shipped corpora, sliding windows, the one split, cached downloads."""
