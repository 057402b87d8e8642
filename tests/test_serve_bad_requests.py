"""Malformed and hostile requests to a real `charlm serve` process, sent as raw bytes over a socket:
each gets the right 4xx status and a JSON error, and the server is as healthy after all of them."""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
from urllib.parse import urlsplit

import pytest

pytest.importorskip("uvicorn", reason="charlm serve needs the serve extra: pip install 'charlm[serve]'")

from servemodels import start_server, stop_server  # noqa: E402

TOKEN = "t0ken-for-the-tests"
TIME_LIMIT = 2.0
SCORE = "/v1/lm/score"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def servers(serve_models):
    """{"open": (process, host, port), "guarded": ...}: without and with a token."""
    models = {"lm": serve_models["lm"], "ner": serve_models["ner"], "cond": serve_models["cond"]}
    out = {}
    try:
        for name, env in (("open", {}), ("guarded", {"CHARLM_TOKEN": TOKEN})):
            proc, base = start_server(models, "--time-limit", str(TIME_LIMIT), env=env)
            url = urlsplit(base)
            out[name] = (proc, url.hostname, url.port)
        yield out
    finally:
        for proc, _, _ in out.values():
            stop_server(proc)


def exchange(host: str, port: int, method: str, path: str, headers: dict, body=b"", chunked: bool = False,
             host_header: str | None = None) -> tuple[int, bytes]:
    """Send one request as raw bytes (body: bytes, or an iterable of pieces sent one by one, stopping
    as soon as the server answers) and return (status, response body)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header or f'{host}:{port}'}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    pieces = [body] if isinstance(body, bytes) else body
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        pieces = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p] + [b"0\r\n\r\n"]
    elif isinstance(body, bytes):
        lines.append(f"Content-Length: {len(body)}")
    sock = socket.create_connection((host, port), timeout=30)
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        for piece in pieces:
            if select.select([sock], [], [], 0)[0]:
                break  # answered before the body ended
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()
    finally:
        sock.close()


def slow_body():
    """Ten bytes of a 100-byte body, then nothing for longer than the time limit."""
    yield b'{"texts": '
    time.sleep(TIME_LIMIT + 0.5)
    yield b" " * 90


def deep(n: int) -> bytes:
    return b'{"texts": ' + b"[" * n + b"]" * n + b"}"


def j(obj) -> bytes:
    return json.dumps(obj).encode()


AUTH = {"Authorization": f"Bearer {TOKEN}"}

# (id, server, method, path, headers, body, expected status, words the error must contain, options)
CASES = [
    # size
    ("body-over-max-declared", "open", "POST", SCORE, JSON, b'{"texts": ["' + b"a" * 1_000_100 + b'"]}', 413,
     "--max-body", {}),
    ("body-over-max-chunked", "open", "POST", SCORE, JSON, [b'{"texts": ["'] + [b"a" * 65536] * 32, 413,
     "--max-body", {"chunked": True}),
    ("content-length-huge", "open", "POST", SCORE, {**JSON, "Content-Length": "99999999999"}, [b"{}"], 413,
     "--max-body", {}),
    ("too-many-texts", "open", "POST", SCORE, JSON, j({"texts": ["a"] * 65}), 413, "--max-texts", {}),
    ("too-many-tokens", "open", "POST", SCORE, JSON, j({"texts": ["a" * 2001]}), 413, "--max-tokens", {}),
    ("prefix-too-long", "open", "POST", "/v1/lm/next", JSON, j({"prefix": "b" * 2001}), 413, "--max-tokens", {}),
    ("sample-too-long", "open", "POST", "/v1/lm/sample", JSON, j({"length": 1001}), 400, "--max-length", {}),
    ("beam-too-wide", "open", "POST", "/v1/lm/sample", JSON, j({"beam": 17}), 400, "--max-beam", {}),
    ("too-many-samples", "open", "POST", "/v1/lm/sample", JSON, j({"num": 65}), 400, "--max-texts", {}),
    ("k-too-large", "open", "POST", "/v1/lm/next", JSON, j({"k": 10 ** 6}), 400, "--max-k", {}),
    ("slow-body", "open", "POST", SCORE, {**JSON, "Content-Length": "100"}, slow_body(), 408, "--time-limit", {}),
    # bytes and JSON
    ("not-utf8", "open", "POST", SCORE, JSON, b'{"texts": ["caf\xe9"]}', 400, "not UTF-8", {}),
    ("utf16-with-bom", "open", "POST", SCORE, JSON, '{"texts": ["a"]}'.encode("utf-16"), 400, "UTF-8", {}),
    ("malformed-json", "open", "POST", SCORE, JSON, b'{"texts": ["a"', 400, "malformed JSON", {}),
    ("empty-body", "open", "POST", SCORE, JSON, b"", 400, "empty", {}),
    ("array-not-object", "open", "POST", SCORE, JSON, b'["a"]', 400, "JSON object", {}),
    ("deep-json", "open", "POST", SCORE, JSON, deep(50), 400, "nested", {}),
    ("very-deep-json", "open", "POST", SCORE, JSON, deep(200_000), 400, "nested", {}),
    ("nan", "open", "POST", "/v1/lm/sample", JSON, b'{"temperature": NaN}', 400, "NaN", {}),
    ("infinity", "open", "POST", "/v1/lm/sample", JSON, b'{"temperature": Infinity}', 400, "Infinity", {}),
    ("huge-float", "open", "POST", "/v1/lm/sample", JSON, b'{"temperature": 1e999}', 400, "too large", {}),
    ("huge-integer", "open", "POST", "/v1/lm/next", JSON, b'{"k": ' + b"9" * 5000 + b"}", 400, "malformed", {}),
    ("lone-surrogate", "open", "POST", SCORE, JSON, b'{"texts": ["a\\ud800b"]}', 400, "surrogate", {}),
    # fields
    ("unknown-field", "open", "POST", SCORE, JSON, j({"texts": ["a"], "path": "/etc/passwd"}), 400,
     "unknown field 'path'", {}),
    ("missing-field", "open", "POST", SCORE, JSON, j({"per_token": True}), 400, "missing field 'texts'", {}),
    ("texts-a-string", "open", "POST", SCORE, JSON, j({"texts": "abc"}), 400, "texts must be an array", {}),
    ("texts-empty", "open", "POST", SCORE, JSON, j({"texts": []}), 400, "empty", {}),
    ("text-a-number", "open", "POST", SCORE, JSON, j({"texts": ["a", 5]}), 400, "texts[1] must be a string", {}),
    ("text-without-tokens", "open", "POST", SCORE, JSON, j({"texts": [""]}), 400, "no tokens", {}),
    ("sentence-without-words", "open", "POST", "/v1/ner/tag", JSON, j({"texts": ["a", "   "]}), 400,
     "texts[1] has no tokens", {}),
    ("k-a-string", "open", "POST", "/v1/lm/next", JSON, j({"k": "5"}), 400, "k must be an integer", {}),
    ("k-a-boolean", "open", "POST", "/v1/lm/next", JSON, j({"k": True}), 400, "k must be an integer", {}),
    ("k-zero", "open", "POST", "/v1/lm/next", JSON, j({"k": 0}), 400, "at least 1", {}),
    ("k-a-float", "open", "POST", "/v1/lm/next", JSON, j({"k": 2.5}), 400, "k must be an integer", {}),
    ("negative-seed", "open", "POST", "/v1/lm/sample", JSON, j({"seed": -1}), 400, "seed", {}),
    ("top-p-above-one", "open", "POST", "/v1/lm/sample", JSON, j({"top_p": 1.5}), 400, "top_p", {}),
    ("temperature-with-beam", "open", "POST", "/v1/lm/sample", JSON, j({"beam": 3, "temperature": 0.5}), 400,
     "for sampling", {}),
    ("nbest-without-beam", "open", "POST", "/v1/lm/sample", JSON, j({"nbest": 2}), 400, "needs beam", {}),
    ("empty-stop-string", "open", "POST", "/v1/lm/sample", JSON, j({"stop_at": [""]}), 400, "stop string", {}),
    ("unknown-scheme", "open", "POST", "/v1/ner/tag", JSON, j({"texts": ["a"], "scheme": "bio9"}), 400,
     "scheme must be one of", {}),
    ("empty-token-list", "open", "POST", "/v1/ner/tag", JSON, j({"texts": [[]]}), 400, "empty list of tokens", {}),
    # labels: a conditional language model's (neg, pos), and none for another
    ("unknown-label", "open", "POST", "/v1/cond/score", JSON, j({"texts": ["a"], "label": "meh"}), 400,
     "unknown label 'meh': this is a conditional language model, its labels are: neg, pos", {}),
    ("missing-label", "open", "POST", "/v1/cond/next", JSON, j({"prefix": "a"}), 400,
     "give a label: this is a conditional language model, its labels are: neg, pos", {}),
    ("label-unconditional", "open", "POST", "/v1/lm/sample", JSON, j({"label": "pos"}), 400,
     "label is only for a conditional language model", {}),
    ("label-a-number", "open", "POST", "/v1/cond/next", JSON, j({"label": 1}), 400, "label must be a string", {}),
    ("label-a-list", "open", "POST", "/v1/cond/score", JSON, j({"texts": ["a"], "label": ["pos"]}), 400,
     "label must be a string", {}),
    ("label-on-a-tagger", "open", "POST", "/v1/ner/tag", JSON, j({"texts": ["a"], "label": "PER"}), 400,
     "unknown field 'label'", {}),
    ("token-list-to-a-conditional-lm", "open", "POST", "/v1/cond/classify", JSON, j({"texts": [["a", "b"]]}), 400,
     "texts[0] must be a string", {}),
    ("classify-unconditional", "open", "POST", "/v1/lm/classify", JSON, j({"texts": ["a"]}), 400,
     "or a conditional language model", {}),
    # what is asked of whom
    ("text-plain", "open", "POST", SCORE, {"Content-Type": "text/plain"}, j({"texts": ["a"]}), 415,
     "application/json", {}),
    ("no-content-type", "open", "POST", SCORE, {}, j({"texts": ["a"]}), 415, "application/json", {}),
    ("wrong-task", "open", "POST", "/v1/ner/score", JSON, j({"texts": ["a"]}), 400, "task tag", {}),
    ("translate-for-seq2seq", "open", "POST", "/v1/lm/translate", JSON, j({"texts": ["a"]}), 400,
     "is for a sequence-to-sequence model", {}),
    ("get-on-post", "open", "GET", SCORE, {}, b"", 405, "not allowed", {}),
    ("delete", "open", "DELETE", "/v1/models", {}, b"", 405, "not allowed", {}),
    # paths: a model name is only ever a key of the loaded table
    ("dot-dot-slash", "open", "POST", "/v1/../x/score", JSON, j({"texts": ["a"]}), 404, "", {}),
    ("encoded-dot-dot", "open", "POST", "/v1/%2e%2e/score", JSON, j({"texts": ["a"]}), 404, "no model named '..'", {}),
    ("encoded-slash", "open", "POST", "/v1/..%2f..%2fetc%2fpasswd/score", JSON, j({"texts": ["a"]}), 404, "", {}),
    ("model-file-name", "open", "POST", "/v1/lm.npz/score", JSON, j({"texts": ["a"]}), 404, "no model named", {}),
    ("absolute-path", "open", "POST", "/v1/%2Ftmp%2Flm.npz/score", JSON, j({"texts": ["a"]}), 404, "", {}),
    ("nul-in-name", "open", "POST", "/v1/lm%00/score", JSON, j({"texts": ["a"]}), 404, "no model named", {}),
    ("static-traversal", "open", "GET", "/page.js/../../../etc/passwd", {}, b"", 404, "", {}),
    ("foreign-host", "open", "GET", "/v1/models", {}, b"", 400, "Host header", {"host_header": "evil.example"}),
    # the token
    ("no-token", "guarded", "POST", SCORE, JSON, j({"texts": ["a"]}), 401, "token is needed", {}),
    ("wrong-token", "guarded", "POST", SCORE, {**JSON, "Authorization": "Bearer t0ken-for-the-test"},
     j({"texts": ["a"]}), 401, "wrong token", {}),
    ("token-as-basic", "guarded", "GET", "/v1/models", {"Authorization": f"Basic {TOKEN}"}, b"", 401, "", {}),
    ("token-in-query", "guarded", "GET", f"/v1/models?token={TOKEN}", {}, b"", 401, "token", {}),
    ("token-no-scheme", "guarded", "GET", "/healthz", {"Authorization": TOKEN}, b"", 401, "", {}),
    ("right-token-bad-json", "guarded", "POST", SCORE, {**JSON, **AUTH}, b"{", 400, "malformed", {}),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_bad_request_gets_its_status_and_a_json_error(servers, case):
    _, server, method, path, headers, body, status, words, options = case
    proc, host, port = servers[server]
    got, data = exchange(host, port, method, path, headers, body, **options)
    assert got == status, data[:300]
    error = json.loads(data)["error"]
    assert words in error
    assert proc.poll() is None


def test_the_table_is_long_enough():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


def test_a_client_that_leaves_in_the_middle_of_its_body_is_a_400_in_the_log(servers):
    proc, host, port = servers["open"]
    refused = f"POST {SCORE} 400 "
    before = sum(refused in line for line in proc.log)
    sock = socket.create_connection((host, port), timeout=30)
    sock.sendall(f"POST {SCORE} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: 100\r\n\r\n{{\"texts\": ".encode())
    sock.close()
    end = time.monotonic() + 10
    while sum(refused in line for line in proc.log) == before and time.monotonic() < end:
        time.sleep(0.05)
    assert sum(refused in line for line in proc.log) == before + 1, "".join(proc.log[-5:])


def test_the_servers_are_healthy_after_all_of_them(servers, serve_models):
    for name, (proc, host, port) in servers.items():
        auth = AUTH if name == "guarded" else {}
        assert exchange(host, port, "GET", "/healthz", auth) == (200, b'{"status":"ok","models":3}')
        status, data = exchange(host, port, "POST", SCORE, {**JSON, **auth}, j({"texts": ["the cat sat"]}))
        assert status == 200 and json.loads(data)["results"][0]["tokens"] == list("the cat sat")
        assert proc.poll() is None
    log = "".join(servers["open"][0].log)
    assert "Traceback" not in log and " 500 " not in log
