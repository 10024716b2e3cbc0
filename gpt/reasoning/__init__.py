"""Reasoning on a CPU: a verifier for checkable answers, problems, voting and best-of-N, and GRPO."""
