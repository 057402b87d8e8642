"""Entity schemes (charlm/sentence/labels.py) and metrics (charlm/sentence/metrics.py), against hand-computed counts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm.sentence.labels import chunks, convert, detect_scheme, entity_types, from_chunks, is_entity_tagset, training_scheme
from charlm.sentence.metrics import classification_report, conlleval_counts, prf, tag_report

# ------------------------------------------------------------------------------ schemes

def test_detect_scheme():
    assert detect_scheme([["I-PER", "I-PER", "O"]]) == "IOB1"
    assert detect_scheme([["B-PER", "I-PER", "O", "B-LOC"]]) == "IOB2"
    assert detect_scheme([["O", "B-PER"], ["I-LOC"]]) == "IOB1"  # an entity opened by I-
    assert detect_scheme([["B-PER", "E-PER", "S-LOC"]]) == "IOBES"
    assert detect_scheme([["NOUN", "VERB"]]) is None
    assert detect_scheme([["O", "O"]]) is None
    assert not is_entity_tagset(["O", "B-PER", "PER"])
    assert training_scheme("IOB1") == "IOB2" and training_scheme("IOBES") == "IOBES"
    assert training_scheme(None) is None
    assert entity_types(["B-PER", "I-LOC", "O", "I-PER"]) == ["LOC", "PER"]


def test_chunks_boundary_cases():
    # entity at the start and end, adjacent entities of one type (IOB1's B-), a type change in an I- run
    tags = ["I-PER", "I-PER", "B-PER", "O", "I-ORG", "I-LOC", "I-LOC"]
    assert chunks(tags) == [("PER", 0, 2), ("PER", 2, 3), ("ORG", 4, 5), ("LOC", 5, 7)]
    assert convert(tags, "IOB2") == ["B-PER", "I-PER", "B-PER", "O", "B-ORG", "B-LOC", "I-LOC"]
    assert convert(tags, "IOBES") == ["B-PER", "E-PER", "S-PER", "O", "S-ORG", "B-LOC", "E-LOC"]
    assert convert(convert(tags, "IOBES"), "IOB1") == tags
    assert chunks(["O", "I-PER", "E-PER", "I-PER"]) == [("PER", 1, 3), ("PER", 3, 4)]  # after E-: new chunk
    assert chunks([]) == [] and from_chunks([], 2, "IOB2") == ["O", "O"]


TAG = st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "E-PER", "S-LOC"])


@settings(max_examples=200, deadline=None)
@given(st.lists(TAG, max_size=12), st.sampled_from(["IOB1", "IOB2", "IOBES"]))
def test_conversion_keeps_the_chunks(tags, scheme):
    converted = convert(tags, scheme)
    assert chunks(converted) == chunks(tags)
    assert detect_scheme([converted]) in (None, scheme, "IOB2" if scheme == "IOB1" else scheme)


# ------------------------------------------------------------------------------ conlleval

# Three sentences in IOB1 (wikigold's scheme), worked out by hand:
#   S1 gold  PER[0,2) PER[3,5) PER[5,6)   (adjacent PERs: B- marks the second; one ends the sentence)
#      guess PER[0,2) PER[3,6)            -> 1 correct (PER[0,2))
#   S2 gold  ORG[0,2) LOC[2,3)            (the type changes inside an I- run)
#      guess ORG[0,1) LOC[1,3)            -> 0 correct
#   S3 gold  LOC[0,1) MISC[2,3)           (starts with LOC right after S2 ended with one: the sentence
#      guess LOC[0,1)                      boundary keeps them apart) -> 1 correct
# gold 7, guessed 5, correct 2: P = 2/5, R = 2/7, F1 = 2PR/(P+R) = 1/3.
# Per type: PER c1 g2 n3 (P 1/2, R 1/3, F 2/5); ORG c0 g1 n1; LOC c1 g2 n2 (F 1/2); MISC c0 g0 n1.
# Tokens: 5/6 + 2/3 + 2/3 right = 9/12.
GOLD = [["I-PER", "I-PER", "O", "I-PER", "I-PER", "B-PER"],
        ["I-ORG", "I-ORG", "I-LOC"],
        ["I-LOC", "O", "I-MISC"]]
GUESS = [["I-PER", "I-PER", "O", "I-PER", "I-PER", "I-PER"],
         ["I-ORG", "I-LOC", "I-LOC"],
         ["I-LOC", "O", "O"]]


def test_conlleval_hand_computed_iob1_example():
    c = conlleval_counts(GOLD, GUESS)
    assert (c.correct, c.guessed, c.gold, c.tokens, c.correct_tags) == (2, 5, 7, 12, 9)
    assert c.per_type == {"PER": [1, 2, 3], "ORG": [0, 1, 1], "LOC": [1, 2, 2], "MISC": [0, 0, 1]}
    r = c.report()
    assert r["precision"] == pytest.approx(2 / 5) and r["recall"] == pytest.approx(2 / 7)
    assert r["f1"] == pytest.approx(1 / 3) and r["accuracy"] == pytest.approx(0.75)
    assert r["per_type"]["PER"]["f1"] == pytest.approx(0.4)
    assert r["per_type"]["LOC"]["f1"] == pytest.approx(0.5)
    assert r["per_type"]["MISC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}


def test_conlleval_same_entities_in_every_scheme():
    base = conlleval_counts(GOLD, GUESS)
    for scheme in ("IOB1", "IOB2"):
        c = conlleval_counts([convert(s, scheme) for s in GOLD], [convert(s, scheme) for s in GUESS])
        assert (c.correct, c.guessed, c.gold, c.per_type) == (base.correct, base.guessed, base.gold, base.per_type)


def test_conlleval_counts_add_up_over_shares():
    whole = conlleval_counts(GOLD, GUESS)
    part = conlleval_counts(GOLD[:1], GUESS[:1])
    part.add(conlleval_counts(GOLD[1:], GUESS[1:]))
    assert part == whole


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
                                   st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])),
                         min_size=1, max_size=8), max_size=5))
def test_conlleval_correct_chunks_are_the_common_chunks(sentences):
    """For B/I/O tags conlleval's streaming count equals the chunks (type, start, end) both share."""
    gold = [[g for g, _ in s] for s in sentences]
    guess = [[p for _, p in s] for s in sentences]
    c = conlleval_counts(gold, guess)
    assert c.gold == sum(len(chunks(s)) for s in gold)
    assert c.guessed == sum(len(chunks(s)) for s in guess)
    assert c.correct == sum(len(set(chunks(g)) & set(chunks(p))) for g, p in zip(gold, guess))


def test_conlleval_refuses_unequal_lengths():
    with pytest.raises(ValueError):
        conlleval_counts([["O"]], [["O", "O"]])


# ------------------------------------------------------------------------------ tags and classes

def test_tag_report():
    r = tag_report([["A", "B", "A"], ["C"]], [["A", "A", "A"], ["B"]])
    assert r["accuracy"] == pytest.approx(0.5) and r["tokens"] == 4
    assert r["per_tag"]["A"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8),
                                 "support": 2, "predicted": 3}
    assert r["per_tag"]["C"]["recall"] == 0.0 and r["per_tag"]["C"]["predicted"] == 0


def test_classification_report_and_unknown_gold_labels():
    gold = ["pos", "pos", "neg", "neg", "meh"]  # "meh": a label the model never saw
    pred = ["pos", "neg", "neg", "neg", "pos"]
    r = classification_report(gold, pred, labels=["neg", "pos"])
    assert r["accuracy"] == pytest.approx(3 / 5)
    assert r["labels"] == ["neg", "pos", "meh"]
    assert r["confusion"] == [[2, 0, 0], [1, 1, 0], [0, 1, 0]]
    # neg: P 2/3 R 1 F 0.8; pos: P 1/2 R 1/2 F 0.5; meh: F 0 -> macro (0.8 + 0.5 + 0) / 3
    assert r["per_class"]["neg"]["f1"] == pytest.approx(0.8)
    assert r["per_class"]["pos"]["f1"] == pytest.approx(0.5)
    assert r["macro_f1"] == pytest.approx(1.3 / 3)
    assert prf(0, 0, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
