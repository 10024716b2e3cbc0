"""The bounds the training configs share, for their `option(...)` fields.

Each bound is written here or in its field and nowhere else: the command line's flags, the app's
sliders and every config's `__post_init__` read it from the field (`gpt.config.bounds`).
"""

from gpt.config import GPTConfig, bounds

MAX_SEED = 2**31 - 1  # a 32-bit signed integer: every RNG and number field takes it
MAX_STEPS = 1_000_000  # optimizer steps (and intervals counted in them)
MAX_EPOCHS = 20
MAX_BATCH = 128
MIN_LR, MAX_LR = 1e-6, 1.0
MAX_EVAL_EVERY = 100_000  # steps between evaluations within an epoch; 0 turns them off
MAX_BLOCKS = int(bounds(GPTConfig, "n_layers")[1])  # the deepest model: finetuning may unfreeze all its blocks
MAX_LORA_RANK = 256
MIN_LORA_ALPHA, MAX_LORA_ALPHA = 0.01, 1024.0
