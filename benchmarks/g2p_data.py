"""CMUdict grapheme-to-phoneme pairs: a fixed, seeded 90/5/5 split by headword, as pair files.

    python benchmarks/g2p_data.py [--cmudict PATH] [--out DIR] [--seed 0]
    python benchmarks/g2p_data.py --subset 3000 --out data      # the small credited subset in data/

Reads the CMU Pronouncing Dictionary (`../shared/data/cmudict/cmudict.dict`, see its SOURCES.md entry;
BSD-style licence: keep its notice beside any copy) and writes g2p.train.txt, g2p.dev.txt and
g2p.test.txt (`cmudict-g2p.*.txt` with --subset) as SOURCE<TAB>TARGET files (charlm.seq2seq.pairs):

    abbott<TAB>AE B AH T

The rule:
  * a line is `HEADWORD PH1 PH2 ...`; a `# comment` (22 lines have one) is cut off first;
  * `word(2)`, `word(3)` ... are alternative pronunciations of `word`: more references of the same
    source (one pair line each, in dictionary order);
  * the source is the headword as written (lowercase letters, and the apostrophes, periods and
    hyphens some headwords have); the target is the ARPAbet phones with their stress digits removed
    (AH0, AH1 -> AH), as the papers count, separated by single spaces: read the target side with
    `--target-level word --target-split whitespace`. Alternatives that differ only in stress become
    one reference;
  * the split is by headword, so that no word is in two parts: the words are ranked by the SHA-256
    hex digest of `charlm-g2p:SEED:WORD`; the first round(0.9 n) are train, the next round(0.05 n)
    dev, the rest test. Each file lists its words in dictionary order.
  * --subset N keeps the first N train words of that ranking and the first N/10 dev and test words.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

from common import ROOT, SHARED_DATA

CMUDICT = SHARED_DATA / "cmudict" / "cmudict.dict"
PARTS = (("train", 0.9), ("dev", 0.05), ("test", 0.05))
_ALTERNATIVE = re.compile(r"\(\d+\)$")
_STRESS = re.compile(r"\d")


def parse_cmudict(lines) -> dict[str, list[str]]:
    """{headword: distinct phone strings (stress removed), in dictionary order}, words in dictionary order."""
    entries: dict[str, list[str]] = {}
    for lineno, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) < 2:
            raise ValueError(f"line {lineno}: a headword without phones: {line.strip()!r}")
        word = _ALTERNATIVE.sub("", fields[0])
        phones = " ".join(_STRESS.sub("", p) for p in fields[1:])
        refs = entries.setdefault(word, [])
        if phones not in refs:
            refs.append(phones)
    return entries


def split_words(words, seed: int = 0) -> dict[str, list[str]]:
    """{part: words of that part, ranked} by the SHA-256 rule of the module docstring."""
    rank = sorted(words, key=lambda w: hashlib.sha256(f"charlm-g2p:{seed}:{w}".encode()).hexdigest())
    n, out, start = len(rank), {}, 0
    for k, (part, share) in enumerate(PARTS):
        stop = n if k == len(PARTS) - 1 else start + round(n * share)
        out[part] = rank[start:stop]
        start = stop
    return out


def pair_lines(words, entries: dict[str, list[str]], order: dict[str, int]) -> str:
    """The pair file of `words`: one WORD<TAB>PHONES line per reference, words in dictionary order."""
    return "".join(f"{w}\t{r}\n" for w in sorted(words, key=order.__getitem__) for r in entries[w])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cmudict", type=Path, default=CMUDICT, help=f"cmudict.dict (default {CMUDICT})")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "runs" / "g2p", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subset", type=int, default=None, help="keep N train words (and N/10 dev, test)")
    args = p.parse_args(argv)
    print("$ python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]))
    if not args.cmudict.is_file():
        p.error(f"no {args.cmudict}: pass --cmudict PATH/cmudict.dict")
    entries = parse_cmudict(args.cmudict.read_text(encoding="utf-8").splitlines())
    order = {w: i for i, w in enumerate(entries)}
    parts = split_words(entries, args.seed)
    prefix = "g2p"
    if args.subset is not None:
        keep = {"train": args.subset, "dev": args.subset // 10, "test": args.subset // 10}
        parts = {part: words[:keep[part]] for part, words in parts.items()}
        prefix = "cmudict-g2p"
    args.out.mkdir(parents=True, exist_ok=True)
    for part, words in parts.items():
        path = args.out / f"{prefix}.{part}.txt"
        path.write_text(pair_lines(words, entries, order), encoding="utf-8")
        pairs = sum(len(entries[w]) for w in words)
        print(f"{path}: {len(words)} words, {pairs} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
