"""Classification finetuning (the book's chapter 6): the SMS spam data, the classifier, its training and evaluation."""
