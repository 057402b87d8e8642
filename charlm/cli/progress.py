"""A progress bar for reading a large corpus: bytes read, MB/s and ETA (on stderr)."""

from __future__ import annotations

import sys

from tqdm import tqdm

SHOW_BYTES = 16 << 20  # smaller inputs are read too fast to need a bar


class ReadingBar:
    """`update(done_bytes, total_bytes)` draws a bar for an input of at least SHOW_BYTES (or of
    unknown size, such as stdin, once that much is read); a new input (done < the bar's count)
    starts a new bar. Nothing is drawn when `quiet`."""

    def __init__(self, quiet: bool = False):
        self.quiet, self.bar = quiet, None

    def update(self, done: int, total: int | None) -> None:
        if self.quiet:
            return
        if self.bar is not None and done < self.bar.n:
            self.close()
        if self.bar is None:
            if (total if total is not None else done) < SHOW_BYTES:
                return
            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc="reading", file=sys.stderr,
                            dynamic_ncols=True, mininterval=0.5)
        self.bar.update(done - self.bar.n)
        if total is not None and done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
