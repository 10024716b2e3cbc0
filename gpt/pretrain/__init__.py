"""Pretraining (the book's chapter 5): the trainer, its resumable state, and the baselines it must beat."""
