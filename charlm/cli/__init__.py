"""The `charlm` command line: the group (`group.py`) and one module per subcommand, each of which
registers itself on `cli` when imported. This is the only package that prints or exits."""

from charlm.cli.group import cli, main  # noqa: F401
from charlm.cli import tokenize, train, score, sample  # noqa: F401,E402
from charlm.cli import nexttoken, info, plot  # noqa: F401,E402
from charlm.cli import tag, classify, evaluate  # noqa: F401,E402
from charlm.cli import export  # noqa: F401,E402
from charlm.cli import serve  # noqa: F401,E402
