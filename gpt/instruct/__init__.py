"""Instruction finetuning (the book's chapter 7): the data, the Alpaca prompt and chat, training, evaluation."""
