"""The models the `charlm serve` tests serve, trained in memory in a second or two: a character
language model, an entity tagger, a part-of-speech tagger, a classifier, a conditional language
model (labels pos/neg) and a sequence-to-sequence model (written dates to ISO dates), saved in a folder."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import charlm
from charlm.seq2seq.dates import write_date_pairs
from tasksdata import classification_text, column_text, conllu_text, ner_sentences
from tinymodel import TEXT, build, save

TINY = dict(hidden=16, embedding=8, char_embedding=4, char_hidden=4, layers=1, batch_size=8, eval_every=1000)
DATE = "the 29th of August 1958"   # a source the date model translates (rightly or not: it trained a few steps)
ENTITY_SENTENCE = "He said, Teddy Roosevelt was a great President"   # the tagger finds Teddy Roosevelt (PER)


def train_models(folder: Path) -> dict[str, str]:
    """{name: path} of the six models (lm, ner, pos, cls, cond, dates), written to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    ner, pos, cls = folder / "ner.txt", folder / "pos.conllu", folder / "cls.tsv"
    ner.write_text(column_text(ner_sentences(60, seed=1)), encoding="utf-8")
    pos.write_text(conllu_text(40, seed=1), encoding="utf-8")
    cls.write_text(classification_text(80, seed=1), encoding="utf-8")
    paths = {"lm": save(folder / "lm.npz", *build("char", "stream", text=TEXT + "The apple and pear salad\n",
                                                  steps=30, hidden=16, embedding=8)[:2])}
    for name, corpus, options in (("ner", ner, dict(task="tag", max_steps=80, lr=0.02)),
                                  ("pos", pos, dict(task="tag", format="conllu", tag_column="upos", max_steps=30)),
                                  ("cls", cls, dict(task="classify", max_steps=30))):
        paths[name] = charlm.train(corpus, output=folder / f"{name}.npz", **options, **TINY).path
    paths["cond"] = charlm.train(cls, output=folder / "cond.npz", condition=True, label_embedding=4, hidden=16,
                                 embedding=8, layers=1, batch_size=8, max_steps=20, eval_every=1000).path
    write_date_pairs(folder / "dates.tsv", 200, seed=1)
    paths["dates"] = charlm.train(folder / "dates.tsv", output=folder / "dates.npz", task="seq2seq", hidden=16,
                                  embedding=8, layers=1, batch_size=16, max_steps=30, lr=0.01, eval_every=1000).path
    return paths


# -- a real `charlm serve` process -----------------------------------------------------------------

def start_server(paths: dict[str, str], *options: str, env: dict | None = None, timeout: float = 60.0):
    """(process, base URL) of `charlm serve -m NAME=PATH ... --port 0 OPTIONS` once it listens.
    Its stderr (the log) is collected in `process.log` (a list of lines) by a reader thread."""
    args = [sys.executable, "-m", "charlm", "serve", "--port", "0", *options]
    for name, path in paths.items():
        args += ["-m", f"{name}={path}"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})
    proc.log = []
    found = queue.Queue()

    def read() -> None:
        for line in proc.stderr:
            proc.log.append(line)
            m = re.search(r"serving on (http://\S+?)/ ", line)
            if m:
                found.put(m.group(1))
        found.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        base = found.get(timeout=timeout)
    except queue.Empty:
        base = None
    if base is None:
        stop_server(proc)
        raise RuntimeError("charlm serve did not start:\n" + "".join(proc.log))
    wait_healthy(base)
    return proc, base


def wait_healthy(base: str, timeout: float = 30.0, headers: dict | None = None) -> None:
    """Poll GET /healthz until the server answers (any status: it is listening)."""
    end = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(urllib.request.Request(base + "/healthz", headers=headers or {}), timeout=5)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def stop_server(proc, timeout: float = 20.0, sig: int = signal.SIGINT) -> int:
    """Ctrl-C the server (SIGINT, or `sig`) and wait for it; its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
