"""The layout keeps its rules (docs/architecture.md): the registry decides, so no module outside the
task modules compares task names; and the package root stays small. (The import contract, no
upward import and no cycle, is `lint-imports`, which `make test` runs before pytest.)"""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "charlm"
TASK_MODULES = PACKAGE / "tasks"
NAMES = r"""["'](?:lm|tag|classify)["']"""
COMPARISONS = [
    re.compile(r"""\btask\w*(?:\.name)?\s*(?:==|!=)\s*["']"""),         # task == "tag", opts.task != "lm"
    re.compile(r"""["']\s*(?:==|!=)\s*[\w.]*\btask\w*\b"""),            # "tag" == task
    re.compile(r"""\btask\w*\s+(?:not\s+)?in\s+[(\[{]\s*["']"""),       # task in ("tag", "classify")
    re.compile(rf"""(?:==|!=)\s*{NAMES}|{NAMES}\s*(?:==|!=)"""),         # kind == "tag", whatever the name
]


def _lines():
    for path in sorted(PACKAGE.rglob("*.py")):
        if TASK_MODULES in path.parents:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            yield path.relative_to(PACKAGE.parent), n, line


def test_no_task_name_is_compared_outside_the_task_modules():
    found = [f"{path}:{n}: {line.strip()}" for path, n, line in _lines()
             if any(p.search(line) for p in COMPARISONS)]
    assert not found, "compare task names in charlm/tasks/ only (the registry decides):\n" + "\n".join(found)


def test_the_patterns_catch_what_they_are_for():
    for bad in ('if task == "tag":', 'x = opts.task != "lm"', 'if "classify" == self.task:',
                'if task in ("tag", "classify"):', 'kind = 1 if what == "tag" else 2'):
        assert any(p.search(bad) for p in COMPARISONS), bad
    for fine in ('task = get(name)', 'if option.name not in task.accepts:', '"task": meta.get("task")'):
        assert not any(p.search(fine) for p in COMPARISONS), fine


def test_at_most_fifteen_modules_directly_in_the_package():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 15, modules
