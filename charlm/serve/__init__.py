"""`charlm serve`: the loaded models behind an HTTP API and a page (the `serve` extra: Starlette and Uvicorn).

    limits.py     what one request may ask (each limit an option of the command)
    schema.py     a request body to checked parameters (strict JSON, declared fields, types, ranges)
    endpoints.py  the endpoint table: fields and the API call of /score, /next, /sample, /tag, /classify;
                  a model serves those its task object names in `commands`
    batching.py   concurrent score requests of one model answered by one forward pass
    openapi.py    the OpenAPI description, made from the endpoint table
    app.py        the Starlette application: routes, token and Host checks, thread pool, log lines
    static/       the page at / (HTML, JavaScript, CSS; no build step, nothing fetched from elsewhere)

Only app.py imports Starlette; the command (`charlm/cli/serve.py`) imports it when it runs, so the
rest of charlm works without the extra.
"""

EXTRA_HINT = "pip install 'charlm[serve]'"


def missing_extra() -> str | None:
    """None when Starlette and Uvicorn can be imported, else the line that says how to get them."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        return f"charlm serve needs Starlette and Uvicorn ({err.name} is not installed): {EXTRA_HINT}"
    return None
