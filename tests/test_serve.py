"""`charlm serve`'s endpoints through Starlette's test client: the records of the commands' --json
output, computed by the same code; the token; the time limit; a failing request; batching; the log."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading

import pytest

pytest.importorskip("starlette", reason="charlm serve needs the serve extra: pip install 'charlm[serve]'")
from starlette.testclient import TestClient  # noqa: E402

import charlm  # noqa: E402
from charlm.serve import endpoints  # noqa: E402
from charlm.serve.app import Server, build_app  # noqa: E402
from charlm.serve.limits import LIMITS, Limits  # noqa: E402
from servemodels import DATE, ENTITY_SENTENCE  # noqa: E402

LOCAL = "http://127.0.0.1:8000"
PAIR = ["The apple and pear salad", "The apple and pair salad"]


@pytest.fixture(scope="module")
def models(serve_models):
    return {name: charlm.load(path) for name, path in serve_models.items()}


@pytest.fixture
def client(models):
    with TestClient(build_app(Server(models)), base_url=LOCAL) as c:
        yield c


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def post(client, path: str, body: dict, status: int = 200) -> dict:
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


# -- the same records as the commands ------------------------------------------------------------

def test_a_conditional_models_endpoints_answer_what_the_commands_print_given_the_label(client, serve_models,
                                                                                      stdout_of):
    cond, texts = serve_models["cond"], ["a fine film", "so dull"]
    got = post(client, "/v1/cond/score", {"texts": texts, "label": "pos", "per_token": True})
    assert got == {"results": jsonl(stdout_of("score", "-m", cond, "--label", "pos", "--json", "--per-token", *texts))}
    assert got != post(client, "/v1/cond/score", {"texts": texts, "label": "neg", "per_token": True})
    got = post(client, "/v1/cond/next", {"prefix": "a f", "k": 4, "label": "neg"})
    assert got == json.loads(stdout_of("next", "-m", cond, "a f", "-k", "4", "--label", "neg", "--json"))
    got = post(client, "/v1/cond/sample", {"num": 2, "length": 20, "seed": 5, "label": "pos"})
    assert got["results"] == jsonl(stdout_of("sample", "-m", cond, "-n", "2", "-l", "20", "--seed", "5", "--label", "pos",
                                             "--json"))
    assert [r["label"] for r in got["results"]] == ["pos", "pos"]
    got = post(client, "/v1/cond/sample", {"beam": 3, "nbest": 2, "length": 10, "label": "neg", "prime": "a"})
    assert got["results"] == jsonl(stdout_of("sample", "-m", cond, "--beam", "3", "--nbest", "2", "-l", "10",
                                             "--label", "neg", "--prime", "a", "--json"))
    got = post(client, "/v1/cond/classify", {"texts": texts, "top_k": None})   # Bayes' rule
    assert got["results"] == jsonl(stdout_of("classify", "-m", cond, "--json", "--top-k", "2", *texts))
    assert set(got["results"][0]["probs"]) == {"neg", "pos"}


def test_language_model_endpoints_answer_what_the_commands_print(client, serve_models, stdout_of):
    lm = serve_models["lm"]
    got = post(client, "/v1/lm/score", {"texts": PAIR, "per_token": True})
    assert got == {"results": jsonl(stdout_of("score", "-m", lm, "--json", "--per-token", *PAIR))}
    assert got["results"][0]["logprob"] > got["results"][1]["logprob"]  # pear, not pair
    got = post(client, "/v1/lm/next", {"prefix": "The apple and p", "k": 5})
    assert got == json.loads(stdout_of("next", "-m", lm, "The apple and p", "-k", "5", "--json"))
    assert len(got["next"]) == 5
    got = post(client, "/v1/lm/sample", {"prime": "The", "num": 2, "length": 30, "temperature": 0.7, "seed": 3})
    assert got["results"] == jsonl(stdout_of("sample", "-m", lm, "--prime", "The", "-n", "2", "-l", "30", "-t", "0.7",
                                             "--seed", "3", "--json"))
    got = post(client, "/v1/lm/sample", {"prime": "the", "beam": 4, "nbest": 2, "length": 12})
    assert got["results"] == jsonl(stdout_of("sample", "-m", lm, "--prime", "the", "--beam", "4", "--nbest", "2",
                                             "-l", "12", "--json"))


def test_tagger_and_classifier_endpoints_answer_what_the_commands_print(client, serve_models, stdout_of):
    texts = [ENTITY_SENTENCE, "Teddy bears are on sale !"]
    got = post(client, "/v1/ner/tag", {"texts": texts, "spans": True})
    assert got["results"] == jsonl(stdout_of("tag", "-m", serve_models["ner"], "--json", "--spans", *texts))
    assert {"text": "Teddy Roosevelt", "type": "PER", "start": 3, "end": 5} in got["results"][0]["spans"]
    got = post(client, "/v1/ner/tag", {"texts": texts, "scheme": "iobes"})
    assert got["results"] == jsonl(stdout_of("tag", "-m", serve_models["ner"], "--json", "--scheme", "iobes", *texts))
    got = post(client, "/v1/ner/tag", {"texts": [["Teddy", "Roosevelt", "left", "."]]})  # pre-tokenized
    assert got["results"][0]["tokens"] == ["Teddy", "Roosevelt", "left", "."]
    got = post(client, "/v1/pos/tag", {"texts": ["the cat saw a dog ."]})
    assert got["results"] == jsonl(stdout_of("tag", "-m", serve_models["pos"], "--json", "the cat saw a dog ."))
    texts = ["a great film", "dull and boring"]
    got = post(client, "/v1/cls/classify", {"texts": texts, "top_k": 2})
    assert got["results"] == jsonl(stdout_of("classify", "-m", serve_models["cls"], "--json", "--top-k", "2", *texts))


def test_models_lists_each_models_info_and_the_page_is_served(client, serve_models, stdout_of):
    listed = client.get("/v1/models").json()["models"]
    assert [m["name"] for m in listed] == ["lm", "ner", "pos", "cls", "cond", "dates"]
    for m in listed:
        assert m["info"] == json.loads(stdout_of("info", serve_models[m["name"]], "--json"))
    by_name = {m["name"]: m for m in listed}
    assert by_name["lm"]["endpoints"] == ["score", "next", "sample"] and by_name["ner"]["endpoints"] == ["tag"]
    assert by_name["ner"]["entities"] is True and by_name["pos"]["entities"] is False
    assert set(by_name["cls"]["labels"]) == {"pos", "neg"}
    assert by_name["cond"]["endpoints"] == ["score", "next", "sample", "classify"] and by_name["cond"]["labels"] == ["neg", "pos"]
    assert "labels" not in by_name["lm"] and by_name["dates"]["endpoints"] == ["translate"]
    assert client.get("/healthz").json() == {"status": "ok", "models": 6}
    page = client.get("/")
    assert page.status_code == 200 and 'id="next-chart"' in page.text and "default-src 'self'" in \
        page.headers["content-security-policy"]
    for asset in ("/page.js", "/page.css"):
        assert client.get(asset).status_code == 200
    spec = client.get("/v1/openapi.json").json()
    assert set(spec["paths"]) >= {f"/v1/{{model}}/{name}" for name in endpoints.ENDPOINTS}
    score = spec["paths"]["/v1/{model}/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert score["required"] == ["texts"] and score["properties"]["texts"]["maxItems"] == Limits().max_texts


def test_the_page_fetches_nothing_from_elsewhere(client):
    svg = '"http://www.w3.org/2000/svg"'   # the SVG namespace: a name for document.createElementNS, never fetched
    for asset in ("/", "/page.js", "/page.css"):
        text = client.get(asset).text
        assert text.count(svg) == (asset == "/page.js")
        text = text.replace(svg, "")
        assert "://" not in text and "//cdn" not in text, asset


def test_another_tasks_endpoint_is_a_400_naming_the_models_task(client):
    err = post(client, "/v1/ner/score", {"texts": ["x"]}, 400)["error"]
    assert "tagger (task tag)" in err and "/tag" in err
    err = post(client, "/v1/lm/classify", {"texts": ["x"]}, 400)["error"]
    assert "language model (task lm)" in err and "/score, /next, /sample;" in err
    assert err.endswith("/classify is for a classifier (task classify) or a conditional language model (task lm, "
                        "trained with --condition)")
    err = post(client, "/v1/cond/tag", {"texts": ["x"]}, 400)["error"]
    assert "it serves /score, /next, /sample, /classify;" in err
    assert "no model named" in post(client, "/v1/nope/score", {"texts": ["x"]}, 404)["error"]


# -- the token ---------------------------------------------------------------------------------------

def test_with_a_token_every_request_needs_it_except_the_page(models):
    with TestClient(build_app(Server(models, token="s3cret-token")), base_url="http://example.org") as c:
        for path in ("/healthz", "/v1/models"):
            r = c.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and "token" in r.json()["error"]
        r = c.post("/v1/lm/next", json={"prefix": "a"}, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json() == {"error": "wrong token"}
        good = {"Authorization": "Bearer s3cret-token"}
        assert c.post("/v1/lm/next", json={"prefix": "a"}, headers=good).status_code == 200
        assert c.get("/healthz", headers=good).status_code == 200
        assert c.get("/").status_code == 200  # the page holds no data; it asks for the token


def test_without_a_token_only_local_host_names_are_answered(models):
    with TestClient(build_app(Server(models)), base_url="http://127.0.0.1:8000") as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/healthz", headers={"Host": "localhost:8000"}).status_code == 200
        assert c.get("/healthz", headers={"Host": "[::1]:8000"}).status_code == 200
        r = c.get("/healthz", headers={"Host": "evil.example:8000"})
        assert r.status_code == 400 and "Host" in r.json()["error"]


# -- time limit, failures, log ---------------------------------------------------------------------

def test_a_request_over_the_time_limit_is_a_408_and_the_server_carries_on(models, monkeypatch):
    release = threading.Event()

    def slow(model, params, limits):
        release.wait(10)
        return {"slow": True}

    monkeypatch.setitem(endpoints.ENDPOINTS, "next", dataclasses.replace(endpoints.ENDPOINTS["next"], run=slow))
    with TestClient(build_app(Server(models, Limits(time_limit=0.3))), base_url=LOCAL) as c:
        r = c.post("/v1/lm/next", json={"prefix": "a"})
        assert r.status_code == 408 and "--time-limit" in r.json()["error"]
        release.set()
        assert post(c, "/v1/lm/score", {"texts": ["the cat"]})["results"][0]["tokens"]


def test_a_failing_request_is_a_500_and_the_next_one_is_answered(models, monkeypatch, caplog):
    def broken(model, params, limits):
        raise RuntimeError("a bug")

    monkeypatch.setitem(endpoints.ENDPOINTS, "next", dataclasses.replace(endpoints.ENDPOINTS["next"], run=broken))
    with TestClient(build_app(Server(models)), base_url=LOCAL) as c:
        with caplog.at_level(logging.INFO, logger="charlm.serve"):
            r = c.post("/v1/lm/next", json={"prefix": "a"})
        assert r.status_code == 500 and r.json() == {"error": "internal error: RuntimeError"}
        assert post(c, "/v1/lm/score", {"texts": ["the cat"]})["results"]
    assert any("RuntimeError: a bug" in (r.exc_text or "") for r in caplog.records)


def test_one_log_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="charlm.serve"):
        client.post("/v1/lm/score", json={"texts": ["the cat"]})
        client.get("/v1/nope%0Aforged")
        client.get("/healthz")
    lines = [r.getMessage() for r in caplog.records if r.name == "charlm.serve"]
    assert len(lines) == 3
    assert lines[0].startswith("POST /v1/lm/score 200 ") and lines[0].endswith(" ms")
    assert lines[1].startswith("GET /v1/nope%0Aforged 404 ") and "\n" not in lines[1]
    assert lines[2].startswith("GET /healthz 200 ")


# -- batching ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2])
def test_concurrent_score_requests_share_forward_passes_and_get_their_own_answers(models, threads):
    """Four requests at once: one batch per free pool thread (split by their texts), each request
    answered with its own scores; the request with an empty text fails alone."""
    import httpx2

    texts = [["the cat sat"], ["a dog", "the mat"], [""], ["on the log", "the cat and a dog", "a"]]
    server = Server(models, threads=threads, batch_window=0.05)
    app = build_app(server)

    async def all_at_once():
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url=LOCAL) as c:
            return await asyncio.gather(*(c.post("/v1/lm/score", json={"texts": t}) for t in texts))

    answers = asyncio.run(all_at_once())
    batcher = server.batchers["lm", "score"]
    assert batcher.requests == 4 and batcher.batches == threads
    assert answers[2].status_code == 400 and "texts[0] has no tokens" in answers[2].json()["error"]
    for t, r in zip(texts, answers):
        if t != [""]:
            alone = [s.to_dict() for s in models["lm"].score(t)]
            got = r.json()["results"]
            assert [g["tokens"] for g in got] == [a["tokens"] for a in alone]
            assert [g["logprob"] for g in got] == pytest.approx([a["logprob"] for a in alone], rel=1e-5)
    server.close()


def test_requests_that_start_together_are_split_by_their_texts_among_the_free_threads():
    from charlm.serve.batching import split

    def requests(*sizes):
        return [({"texts": ["a"] * n}, i) for i, n in enumerate(sizes)]

    def shape(batches):
        return [[len(params["texts"]) for params, _ in batch] for batch in batches]

    assert shape(split(requests(8, 8, 8, 8), 2)) == [[8, 8], [8, 8]]
    assert shape(split(requests(8, 8, 8, 8), 1)) == shape(split(requests(8, 8, 8, 8), 0)) == [[8, 8, 8, 8]]
    assert shape(split(requests(1, 30, 1), 2)) == [[1, 30], [1]]
    assert shape(split(requests(5), 3)) == [[5]] and split([], 2) == []
    assert [i for batch in split(requests(3, 1, 4, 1, 5), 3) for _, i in batch] == [0, 1, 2, 3, 4]   # in order


def test_score_many_fails_only_the_request_with_the_bad_text(models):
    lm = models["lm"]
    limits = Limits(max_tokens=10)
    out = endpoints.score_many(lm, [{"texts": ["the cat"], "per_token": False, "label": None},
                                    {"texts": ["x" * 11], "per_token": False, "label": None},
                                    {"texts": ["a dog"], "per_token": True, "label": None}], limits)
    assert out[0]["results"][0]["tokens"] == list("the cat") and "per_token" in out[2]["results"][0]
    assert out[1].status == 413 and "--max-tokens" in out[1].message


def test_score_many_scores_each_label_of_a_conditional_model_apart(models):
    cond = models["cond"]
    requests = [{"texts": ["a fine film"], "per_token": False, "label": "pos"},
                {"texts": ["a fine film", "so dull"], "per_token": False, "label": "neg"},
                {"texts": ["so dull"], "per_token": False, "label": "pos"},
                {"texts": ["so dull"], "per_token": False, "label": "meh"}]
    out = endpoints.score_many(cond, requests, Limits())
    for params, answer in zip(requests[:3], out):
        alone = [s.to_dict() for s in cond.score(params["texts"], label=params["label"])]
        assert [a["logprob"] for a in answer["results"]] == pytest.approx([a["logprob"] for a in alone], rel=1e-5)
    assert out[0]["results"][0]["logprob"] != pytest.approx(out[1]["results"][0]["logprob"], rel=1e-6)
    assert out[3].status == 400 and "unknown label 'meh'" in out[3].message


# -- the command --------------------------------------------------------------------------------------

def test_limits_table_matches_the_limits_record():
    assert [(lim.name, lim.default) for lim in LIMITS] == \
        [(f.name, f.default) for f in dataclasses.fields(Limits)]


def test_serve_refuses_other_addresses_without_a_token(run, serve_models):
    r = run("serve", "-m", serve_models["lm"], "--host", "0.0.0.0")
    assert r.exit_code == 2 and "--token" in r.stderr and "Traceback" not in r.output


@pytest.mark.parametrize("models, needle", [
    (["a b=x.npz"], "cannot name a model"),
    (["lm=x.npz", "lm=y.npz"], "two models are named 'lm'"),
    (["missing.npz"], "no model at missing.npz"),
])
def test_serve_refuses_bad_model_options(run, models, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("serve", *[a for m in models for a in ("-m", m)])
    assert r.exit_code != 0 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_serve_without_the_extra_says_what_to_install(run, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "uvicorn", None)  # import uvicorn -> ImportError
    r = run("serve")
    assert r.exit_code == 1 and r.stderr.strip() == ("charlm: error: charlm serve needs Starlette and Uvicorn "
                                                     "(uvicorn is not installed): pip install 'charlm[serve]'")


def test_a_sequence_to_sequence_model_serves_translate_as_the_command_prints(models, serve_models, stdout_of):
    """/translate answers with `charlm translate --json`'s records; the other models refuse it."""
    dates, sources = models["dates"], [DATE, "5/1/2001"]
    with TestClient(build_app(Server({"g2p": dates, "lm": models["lm"]})), base_url=LOCAL) as c:
        r = c.post("/v1/g2p/translate", json={"texts": sources, "beam": 3, "nbest": 2, "attention": True})
        assert r.status_code == 200, r.text
        expected = [t.to_dict(True) for t in dates.translate(sources, beam=3, nbest=2)]
        assert r.json()["results"] == json.loads(json.dumps(expected))
        assert r.json()["results"] == jsonl(stdout_of("translate", "-m", serve_models["dates"], "--beam", "3", "--nbest",
                                                      "2", "--json", "--attention", *sources))
        assert {m["name"]: m["endpoints"] for m in c.get("/v1/models").json()["models"]}["g2p"] == ["translate"]
        for body, status, needle in (({"texts": ["cat"], "beam": 0}, 400, "beam"),
                                     ({"texts": [""]}, 400, "no tokens"),
                                     ({"texts": ["cat"], "beam": 99}, 400, "max-beam")):
            r = c.post("/v1/g2p/translate", json=body)
            assert r.status_code == status and needle in r.json()["error"], r.text
        r = c.post("/v1/lm/translate", json={"texts": ["cat"]})
        assert r.status_code == 400 and "sequence-to-sequence model (task seq2seq)" in r.json()["error"]
        r = c.post("/v1/g2p/score", json={"texts": ["cat"]})
        assert r.status_code == 400 and "serves /translate" in r.json()["error"]


def test_served_connections_send_at_once(tmp_path):
    """The listening socket names TCP, so asyncio (Uvicorn's server) turns Nagle's algorithm off on
    every connection it accepts: else an answer's body, written after its headers, waits for the
    client's delayed ACK (40 ms on Linux)."""
    import socket

    from charlm.cli.serve import listen

    sock = listen("127.0.0.1", 0)

    async def accepted_nodelay() -> int:
        got = asyncio.get_running_loop().create_future()

        def on_connection(reader, writer) -> None:
            got.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connection, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(got, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) != 0
