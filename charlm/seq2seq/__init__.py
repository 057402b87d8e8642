"""The machinery of the sequence-to-sequence task (tasks/seq2seq.py uses it): SOURCE<TAB>TARGET pair
files and their vocabularies (`pairs`), the encoder-decoder network with attention (`network`),
greedy and beam decoding (`search`), the batch source and validation (`source`), and the seeded
date-normalisation pairs of the demo and tests (`dates`). It imports neither charlm.lm nor
charlm.sentence (import-linter checks)."""
