"""The README's command blocks, as tests/test_readme.py runs them.

A block is a fenced block with a language (```bash, ```python, ```sql, ```yaml); a fence without one
is sample output or a diagram. An HTML comment on the line before a fence tells the test how to
treat it: `<!-- readme-test: skip (why) -->` (needs a download, a GPU, or is the test command itself),
`<!-- readme-test: run in a pageray checkout -->` (commands that upload the checkout), or
`<!-- readme-test: run by tests/FILE.py (why) -->` (a test that goes on from what the block leaves,
and runs it as written there, so that it is run once).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

LANGUAGES = ("bash", "python", "sql", "yaml")
_FENCE = re.compile(r"^```(\S*)\s*$")
_MARK = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->\s*$")
# crontab's five schedule fields before the command cron hands to the shell
_CRON = re.compile(r"^(?:[\d*/,\-]+\s+){5}(?=\S)")


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int  # of the opening fence, 1-based
    mark: str  # what the readme-test comment says, "" without one

    @property
    def skipped(self) -> bool:
        return self.mark.startswith("skip")

    @property
    def run_by(self) -> str:
        """The test file that runs the block (`run by tests/x.py (why)`), "" for tests/test_readme.py."""
        found = re.match(r"run by (\S+)", self.mark)
        return found.group(1) if found else ""

    @property
    def in_checkout(self) -> bool:
        return self.mark == "run in a pageray checkout"


def readme_blocks(text: str) -> list[Block]:
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opened = _FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ValueError(f"README line {i + 1}: a fence that is never closed")
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        mark = _MARK.match(before)
        blocks.append(Block(opened.group(1), "\n".join(lines[i + 1:end]), i + 1, mark.group(1) if mark else ""))
        i = end + 1
    return blocks


def shell_commands(text: str) -> list[str]:
    """A bash block's commands: one per line, backslash continuations joined, comment lines dropped;
    a crontab line becomes the command cron would run."""
    commands, pending = [], ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line, pending = pending + line, ""
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            commands.append(_CRON.sub("", stripped))
    return commands


def sql_statements(text: str) -> list[str]:
    """A SQL block's statements (split at a `;` that ends a line), comment lines kept."""
    return [s.strip() for s in re.split(r";\s*$", text, flags=re.MULTILINE)
            if any(ln.strip() and not ln.strip().startswith("--") for ln in s.splitlines())]


def substitute(text: str, paths: dict[str, str]) -> str:
    """The README's example paths replaced, longest first (so /etc/pageray/x.yaml before /etc/pageray)."""
    for old in sorted(paths, key=len, reverse=True):
        text = text.replace(old, paths[old])
    return text
