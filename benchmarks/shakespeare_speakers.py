"""Tiny Shakespeare as labelled speeches for the conditional language model (issue 21): one line
per speech, `SPEAKER<TAB>speech`, the speaker taken from the `NAME:` line that opens it.

    python benchmarks/shakespeare_speakers.py [data/tinyshakespeare.txt] [-o speakers.tsv] [--top 20] [--join " / "]

The corpus is a sequence of speeches separated by blank lines, each a `NAME:` line followed by its
lines of text. The `--top` speakers with the most speeches keep their names (as written, e.g.
"KING RICHARD III" or "Nurse"); every other speaker is `OTHER`. A speech's lines are joined with
`--join` (" / ", the way verse is quoted inline, so the line breaks can be restored from a sample);
a header without text is skipped. Counts per label go to stderr. Standard library only.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OTHER = "OTHER"


def speeches(text: str) -> tuple[list[tuple[str, list[str]]], int, int]:
    """([(speaker, lines of the speech)], blocks without a `NAME:` line, `NAME:` lines without
    text) of the corpus text."""
    out, orphans, empty = [], 0, 0
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        head, body = lines[0].strip(), lines[1:]
        if not head.endswith(":") or len(head) == 1:
            orphans += 1
            continue
        if body:
            out.append((head[:-1].strip(), [line.strip() for line in body]))
        else:
            empty += 1
    return out, orphans, empty


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus", nargs="?", type=Path, default=REPO / "data" / "tinyshakespeare.txt")
    p.add_argument("-o", "--output", type=Path, default=None, help="the labelled file (default: stdout)")
    p.add_argument("--top", type=int, default=20, help="speakers kept by name (the most speeches)")
    p.add_argument("--join", default=" / ", help="what joins the lines of a speech")
    a = p.parse_args()
    found, orphans, empty = speeches(a.corpus.read_text(encoding="utf-8"))
    if not found:
        print(f"shakespeare_speakers: no 'NAME:' speeches in {a.corpus}", file=sys.stderr)
        return 1
    top = {name for name, _ in Counter(name for name, _ in found).most_common(a.top)}
    rows = [f"{name if name in top else OTHER}\t{a.join.join(lines)}\n" for name, lines in found]
    if a.output:
        a.output.write_text("".join(rows), encoding="utf-8")
    else:
        sys.stdout.write("".join(rows))
    counts = Counter(row.split("\t", 1)[0] for row in rows)
    longest = max(len(row.split("\t", 1)[1]) - 1 for row in rows)
    print(f"{len(rows)} speeches, {len(counts)} labels ({len(top)} speakers and {OTHER}); "
          f"skipped {orphans} block(s) without a speaker and {empty} speaker line(s) without text; longest speech {longest} characters", file=sys.stderr)
    for name, n in counts.most_common():
        print(f"  {n:5d}  {name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
