"""The language model's machinery (tasks/lm.py uses it): the network, the corpus as streams of
windows and their batch source, scoring, sampling and beam search. It does not import
charlm.sentence (import-linter checks)."""
