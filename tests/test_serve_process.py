"""A real `charlm serve` process on a free loopback port, spoken to over HTTP."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request

import pytest

pytest.importorskip("uvicorn", reason="charlm serve needs the serve extra: pip install 'charlm[serve]'")

from servemodels import ENTITY_SENTENCE, start_server, stop_server  # noqa: E402

PAIR = ["The apple and pear salad", "The apple and pair salad"]


def call(base: str, path: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json",
                                                                  **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_served_process_answers_over_http_and_logs_each_request(serve_models, stdout_of):
    proc, base = start_server({"lm": serve_models["lm"], "ner": serve_models["ner"]})
    try:
        assert base.startswith("http://127.0.0.1:") and int(base.rsplit(":", 1)[1]) > 0
        status, got = call(base, "/v1/lm/score", {"texts": PAIR})
        assert status == 200
        assert got["results"] == [json.loads(line) for line in
                                  stdout_of("score", "-m", serve_models["lm"], "--json", *PAIR).splitlines()]
        status, got = call(base, "/v1/ner/tag", {"texts": [ENTITY_SENTENCE], "spans": True})
        assert status == 200 and got["results"][0]["spans"][0]["text"] == "Teddy Roosevelt"
        assert call(base, "/v1/ner/next", {"prefix": "x"})[0] == 400
        assert call(base, "/healthz") == (200, {"status": "ok", "models": 2})
    finally:
        code = stop_server(proc)
    log = "".join(proc.log)
    assert code == 0, log
    assert "charlm: model lm:" in log and "charlm: model ner:" in log
    for line in ("POST /v1/lm/score 200 ", "POST /v1/ner/tag 200 ", "POST /v1/ner/next 400 ", "GET /healthz 200 "):
        assert line in log, log
    assert "Traceback" not in log


def test_several_worker_processes_share_the_port_and_the_token(serve_models):
    proc, base = start_server({"lm": serve_models["lm"]}, "--workers", "2", env={"CHARLM_TOKEN": "tok-123"})
    try:
        assert call(base, "/healthz")[0] == 401
        good = {"Authorization": "Bearer tok-123"}
        for _ in range(4):
            status, got = call(base, "/v1/lm/next", {"prefix": "the c", "k": 2}, good)
            assert status == 200 and len(got["next"]) == 2
    finally:
        code = stop_server(proc, sig=signal.SIGTERM)  # as a service manager stops it
    log = "".join(proc.log)
    assert code == 0 and "2 processes" in log and "charlm: stopped" in log, log
