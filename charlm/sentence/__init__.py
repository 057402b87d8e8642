"""The machinery the sentence tasks share (tagging and classification; tasks/tag.py and
tasks/classify.py use it): file formats, the encoder (text -> ids), the one place that pads
sentences into batches, label schemes, decoding, metrics, prediction, the training data and batch
source, and the Tagger/Classifier networks. It does not import charlm.lm (import-linter checks)."""
