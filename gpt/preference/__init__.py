"""Preference tuning with DPO (the book's chapter 7 bonus): chosen/rejected pairs, the loss, training."""
