"""`charlm serve`: the models behind an HTTP API and a page (the `serve` extra: Starlette + Uvicorn)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import socket

import click

from charlm.cli.group import cli
from charlm.cli.options import DEFAULT_MODEL, load_model
from charlm.errors import UsageError
from charlm.engine.blas import share_cores
from charlm.serve.limits import LIMITS, Limits

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: it travels in a header
LOG_CONFIG = {
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"line": {"format": "%(asctime)s charlm: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stderr"}},
    "loggers": {"charlm.serve": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                "uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False}},
}


def model_table(specs) -> dict[str, str]:
    """{name: path} from -m values: PATH (named after its file, `ner.npz` -> ner) or NAME=PATH."""
    table: dict[str, str] = {}
    for spec in specs or (os.environ.get("CHARLM_MODEL") or DEFAULT_MODEL,):
        name, sep, path = spec.partition("=")
        if not (sep and NAME.fullmatch(name) and not os.path.exists(spec)):
            path = spec
            name = os.path.basename(spec)
            name = name[:-4] if name.endswith(".npz") else name
        if not NAME.fullmatch(name):
            raise UsageError(f"{name!r} cannot name a model in a URL: use -m NAME={spec} with a NAME of "
                             f"letters, digits, '.', '_' and '-'")
        if name in table:
            raise UsageError(f"two models are named {name!r}: name them with -m NAME=PATH")
        table[name] = path
    return table


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: any free port); UsageError when that fails.

    Its protocol is named (IPPROTO_TCP, not the default 0): asyncio turns Nagle's algorithm off
    (TCP_NODELAY) only on connections whose socket says TCP, and with it on, the body of an answer,
    written after its headers, waited for the client's delayed ACK of them, 40 ms on Linux: a
    request of 5 ms of work took 48."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except (OSError, OverflowError) as err:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {getattr(err, 'strerror', None) or err}") from None
    sock.set_inheritable(True)  # for --workers: the worker processes accept on it
    return sock


def limit_options(f):
    """One option per limit of `charlm.serve.limits.LIMITS`."""
    for lim in reversed(LIMITS):
        kind = click.IntRange(min=1) if lim.type is int else click.FloatRange(min=0, min_open=True)
        f = click.option(lim.option, lim.name, type=kind, default=lim.default, show_default=True,
                         help=lim.help)(f)
    return f


@cli.command("serve")
@click.option("-m", "--model", "models", multiple=True, metavar="[NAME=]PATH",
              help="A model to serve, named NAME in URLs (default: its file name without .npz); repeat for "
                   "several. [default: $CHARLM_MODEL or charlm.npz]")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port, printed at start).")
@click.option("--token", envvar="CHARLM_TOKEN", show_envvar=True, default=None, metavar="TOKEN",
              help="Every request must carry `Authorization: Bearer TOKEN` (the page asks for it).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes; each loads every model once.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="Model computations at once in each process (a bounded pool).")
@click.option("--batch-window", type=click.FloatRange(min=0), default=2.0, show_default=True, metavar="MS",
              help="Milliseconds a score request waits for concurrent ones to share its forward pass.")
@click.option("--no-batching", is_flag=True, help="Score each request on its own.")
@limit_options
def serve_command(models, host, port, token, workers, threads, batch_window, no_batching, **limits) -> None:
    """Serve models over HTTP: a JSON API and a page to try them in a browser.

    Each model is loaded once. Language models answer POST /v1/NAME/score, /next and /sample
    (a conditional one given a "label", and /classify too), taggers /tag, classifiers /classify,
    sequence-to-sequence models /translate, with the records of the commands' --json output;
    GET /v1/models lists the models, GET /healthz says the server is up, GET / is the page.
    Every request gets one log line on stderr (method, path, status, milliseconds).

    The server listens on loopback unless --host says otherwise, and then only with --token
    (or $CHARLM_TOKEN). Requests over a limit are refused with a 4xx JSON error; see the
    limit options below.

    \b
    Examples:
      charlm serve -m charlm.npz                      # then open http://127.0.0.1:8000/
      charlm serve -m lm=shakespeare.npz -m ner=ner.npz -m sentiment.npz
      CHARLM_TOKEN=$(openssl rand -hex 16) charlm serve -m ner.npz --host 0.0.0.0
      curl -s localhost:8000/v1/charlm/score -H 'Content-Type: application/json' \\
           -d '{"texts": ["The apple and pear salad", "The apple and pair salad"]}'
    """
    from charlm.serve import missing_extra

    problem = missing_extra()
    if problem:
        raise click.ClickException(problem)
    if token is not None and not TOKEN.fullmatch(token):
        raise UsageError("--token must be printable ASCII without spaces")
    if token is None and not is_loopback(host):
        raise UsageError(f"--host {host} makes the models reachable from other machines: give --token TOKEN "
                         f"(or set CHARLM_TOKEN) so that only clients that know it are answered")
    table = model_table(models)
    loaded = {name: load_model(path, any_task=True) for name, path in table.items()}
    window = None if no_batching else batch_window / 1000.0
    sock = listen(host, port)
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from charlm.serve.app import Server, build_app

    blas = share_cores(threads)
    for name, model in loaded.items():
        click.echo(f"charlm: model {name}: {model.path} (task {model.task}, {model.num_params():,} parameters)",
                   err=True)
    bound = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    per = f", BLAS threads {blas} each" if blas else ""
    click.echo(f"charlm: serving on http://{shown}:{bound}/ ({workers} process{'es' if workers > 1 else ''}, "
               f"{threads} threads each{per}; Ctrl-C stops)", err=True)
    settings = dict(host=host, port=bound, log_config=LOG_CONFIG, log_level="warning", access_log=False,
                    server_header=False, timeout_graceful_shutdown=5, lifespan="on")
    if workers > 1:
        os.environ["CHARLM_SERVE"] = json.dumps({"models": table, "limits": limits, "threads": threads,
                                                 "batch_window": window, "host": host})
        if token:
            os.environ["CHARLM_TOKEN"] = token
        config = uvicorn.Config("charlm.serve.app:from_environment", factory=True, workers=workers, **settings)
        _until_stopped(lambda: Multiprocess(config, sockets=[sock]).run())
        return
    app = build_app(Server(loaded, Limits(**limits), token, threads, window, host))
    server = uvicorn.Server(uvicorn.Config(app, **settings))
    _until_stopped(lambda: server.run(sockets=[sock]))
    if not server.started:
        raise click.ClickException("the server did not start (see the lines above)")


def _until_stopped(run) -> None:
    """run() the server; Ctrl-C or SIGTERM is its normal end: exit status 0."""
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        run()
    except KeyboardInterrupt:  # Uvicorn shuts down, then raises the signal it caught again
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo("charlm: stopped", err=True)


def _interrupted(signum, frame):
    raise KeyboardInterrupt
