"""No crash loses work: SIGKILL at random moments, a save that dies or fails half-way, Ctrl-C.

What "safe" means here: whatever moment `charlm train` dies at, every checkpoint file present on
disk loads (checkpoint.load_checkpoint / tasks.load) and `charlm train --resume` continues and
exits 0. A kill in the middle of a save may leave its temporary file behind (a hidden
".NAME.npz.XXXX.tmp" next to the model; nothing can delete it once the process is gone): such
files are never read by charlm and do not disturb loading or resuming.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from charlm import checkpoint
from charlm.cli import cli
from charlm.engine.run import last_path
from charlm.errors import CheckpointError
from charlm.tasks import load as load_model
from charlm.tasks.training import TrainOptions, train

TINY = ["--hidden", "8", "--embedding", "4", "--layers", "1", "--seq-len", "8", "--batch-size", "2"]
TEXT = "".join(f"line {i}: the cat sat on the mat and the dog ran far away.\n" for i in range(200))
KILL_TRIALS = 8
WAVE = 4
ENV = {k: v for k, v in os.environ.items() if k != "CHARLM_MODEL"}


def _train_cmd(corpus, out, *extra):
    return [sys.executable, "-m", "charlm", "train", str(corpus), "-o", str(out), *TINY, "-q", *extra]


def _wait_for_cpu(p: subprocess.Popen, seconds: float, timeout: float = 60.0) -> None:
    """Wait until process p has used `seconds` of CPU time (user + system): on a busy machine,
    wall time says little about how far a process has come."""
    tick = os.sysconf("SC_CLK_TCK")
    end = time.monotonic() + timeout
    while time.monotonic() < end and p.poll() is None:
        fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        if (int(fields[11]) + int(fields[12])) / tick >= seconds:  # utime, stime
            return
        time.sleep(0.05)


def _check_on_disk(out: Path) -> dict:
    """Every checkpoint present loads; returns which ones exist."""
    found = {}
    for p in (out, last_path(out)):
        if p.exists():
            arrays, meta = checkpoint.load_checkpoint(p)  # raises if half-written or corrupt
            load_model(p)
            found[p.name] = meta["kind"]
    return found


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_sigkill_at_random_moments_then_resume(tmp_path):
    """KILL_TRIALS runs of `charlm train --eval-every 1` (two saves per step) killed with SIGKILL at
    seeded random moments between 0.3 and 3 s of CPU time after start, in waves of WAVE concurrent runs to keep
    the test short. After each kill the files on disk load and --resume finishes."""
    rnd = random.Random(1234)
    delays = [rnd.uniform(0.3, 3.0) for _ in range(KILL_TRIALS)]
    resumed = killed_before_first_save = 0
    for w in range(0, KILL_TRIALS, WAVE):
        trials = []
        for i in range(w, min(w + WAVE, KILL_TRIALS)):
            d = tmp_path / f"t{i}"
            d.mkdir()
            (d / "c.txt").write_text(TEXT)
            p = subprocess.Popen(_train_cmd(d / "c.txt", d / "m.npz", "--eval-every", "1", "--max-steps", "100000"),
                                 cwd=d, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            trials.append((d, delays[i], p))
        for d, cpu, p in sorted(trials, key=lambda t: t[1]):
            _wait_for_cpu(p, cpu)  # CPU time, not wall time: a busy machine must not move the kills
            p.send_signal(signal.SIGKILL)
        resumes = []
        for d, _, p in trials:
            p.wait(timeout=30)
            assert p.returncode == -signal.SIGKILL, p.stderr.read()
            found = _check_on_disk(d / "m.npz")
            leftovers = _temp_files(d)
            assert len(leftovers) <= 1, leftovers  # at most the one save that was cut short
            if "m.last.npz" not in found:  # killed before the first save finished
                killed_before_first_save += 1
                r = subprocess.run(_train_cmd(d / "c.txt", d / "m.npz", "--resume"), cwd=d, env=ENV,
                                   capture_output=True, text=True, timeout=60)
                assert r.returncode == 1 and "nothing to resume" in r.stderr, r.stderr
                continue
            resumes.append((d, subprocess.Popen(
                _train_cmd(d / "c.txt", d / "m.npz", "--resume", "--max-steps", "100000", "--time-limit", "0.3"),
                cwd=d, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        for d, p in resumes:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            assert "Traceback" not in err
            assert _check_on_disk(d / "m.npz") == {"m.npz": "best", "m.last.npz": "last"}
            resumed += 1
    print(f"SIGKILL trials: {KILL_TRIALS}; resumed: {resumed}; killed before the first save: "
          f"{killed_before_first_save}")
    assert resumed + killed_before_first_save == KILL_TRIALS
    assert resumed >= 2, "some kills should land after the first save"


def _fork_and_die_mid_save(out: Path, corpus: Path, die_on_call: int) -> int:
    """Train in a forked child whose checkpoint writer calls os._exit part-way through the
    `die_on_call`-th array it writes (a crash in the middle of a save); returns the exit code."""
    pid = os.fork()
    if pid == 0:  # child
        try:
            calls = [0]
            real = checkpoint._write_array

            def dying(f, arr, **kw):
                calls[0] += 1
                if calls[0] == die_on_call:
                    f.write(b"\x93NUMPY partial")  # some bytes of this member, then: gone
                    os._exit(9)
                return real(f, arr, **kw)

            checkpoint._write_array = dying
            opts = TrainOptions(corpus=str(corpus), output=str(out), seq_len=8, batch_size=2,
                                model=dict(cell="lstm", layers=1, hidden=8, embedding=4),
                                eval_every=1, max_steps=50)
            train(opts)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("die_on_call", [3, 11, 20, 37])
def test_process_dies_in_the_middle_of_a_save(tmp_path, die_on_call):
    """Deterministic "killed during a save": the previous files are intact, --resume works."""
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "m.npz"
    assert _fork_and_die_mid_save(out, corpus, die_on_call) == 9
    found = _check_on_disk(out)
    assert _temp_files(tmp_path), "the interrupted save left its temp file (documented)"
    if "m.last.npz" not in found:
        return
    r = CliRunner().invoke(cli, ["train", str(corpus), "-o", str(out), *TINY, "-q", "--resume",
                                 "--max-steps", "60"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert _check_on_disk(out) == {"m.npz": "best", "m.last.npz": "last"}


def test_full_disk_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """A save that fails part-way (ENOSPC from the writer): training stops with one clear line,
    the previous checkpoints are byte-for-byte intact, no temp file is left, --resume works."""
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "m.npz"
    args = ["train", str(corpus), "-o", str(out), *TINY, "-q", "--eval-every", "2"]
    r = CliRunner().invoke(cli, [*args, "--max-steps", "4"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    before = {p.name: p.read_bytes() for p in (out, last_path(out))}

    real = checkpoint._write_array
    calls = [0]

    def full_disk(f, arr, **kw):
        calls[0] += 1
        if calls[0] >= 3:
            f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, arr, **kw)

    monkeypatch.setattr(checkpoint, "_write_array", full_disk)
    r = CliRunner().invoke(cli, [*args, "--max-steps", "20", "--resume"], catch_exceptions=False)
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and "intact" in lines[0], r.stderr
    assert {p.name: p.read_bytes() for p in (out, last_path(out))} == before
    assert _temp_files(tmp_path) == []
    monkeypatch.setattr(checkpoint, "_write_array", real)
    r = CliRunner().invoke(cli, [*args, "--max-steps", "8", "--resume"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert checkpoint.load_checkpoint(last_path(out))[1]["train"]["step"] == 8


def test_save_checkpoint_failure_modes_leave_previous_file(tmp_path, monkeypatch):
    """Unit level: ENOSPC, a failing fsync and a failing rename all leave the old file as it was."""
    path = tmp_path / "x.npz"
    checkpoint.save_checkpoint(path, {"a": np.arange(3.0)}, {"kind": "best"})
    good = path.read_bytes()
    for target in ("fsync", "replace"):
        def boom(*a, **k):
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(checkpoint.os, target, boom)
        with pytest.raises(CheckpointError, match="intact"):
            checkpoint.save_checkpoint(path, {"a": np.arange(5.0)}, {"kind": "best"})
        monkeypatch.undo()
        assert path.read_bytes() == good and _temp_files(tmp_path) == []
    assert checkpoint.load_checkpoint(path)[0]["a"].tolist() == [0.0, 1.0, 2.0]


def test_saved_model_is_an_ordinary_readable_file(tmp_path):
    """The temp file is created 0600; the saved model gets the usual umask-based mode."""
    path = tmp_path / "x.npz"
    old = os.umask(0o022)
    try:
        checkpoint.save_checkpoint(path, {"a": np.arange(3.0)}, {"kind": "best"})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_sigterm_save_and_exit_cleanly(tmp_path, sig, code):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "m.npz"
    p = subprocess.Popen(_train_cmd(corpus, out, "--eval-every", "1000", "--max-steps", "1000000"),
                         cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_cpu(p, 1.2)  # well into training (startup takes ~0.4 s of CPU), no save yet
    assert p.poll() is None
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)
    assert p.returncode == code, err
    assert "Traceback" not in err
    assert "resume with: charlm train" in err and "--resume" in err
    found = _check_on_disk(out)
    assert found == {"m.npz": "best", "m.last.npz": "last"}  # saved on the way out
    step = checkpoint.load_checkpoint(last_path(out))[1]["train"]["step"]
    assert step > 0
    r = subprocess.run(_train_cmd(corpus, out, "--resume", "--max-steps", str(step + 3)), cwd=tmp_path,
                       env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert checkpoint.load_checkpoint(last_path(out))[1]["train"]["step"] == step + 3
