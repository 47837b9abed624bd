"""Every TOML example of docs/program.md is a program file that `loyalty program check` accepts,
or, marked `# refused: <message>` on its first line, one it refuses with exactly that message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from worker.domain.engine import load_program
from worker.domain.errors import ProgramError

PROGRAM_DOC = Path(__file__).parents[2] / "docs" / "program.md"
TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```$", re.MULTILINE | re.DOTALL)
REFUSED = "# refused: "


def toml_examples(text: str) -> list[str]:
    return TOML_BLOCK.findall(text)


EXAMPLES = toml_examples(PROGRAM_DOC.read_text(encoding="utf-8"))


def test_the_page_has_examples_of_both_kinds():
    refused = [e for e in EXAMPLES if e.startswith(REFUSED)]
    assert len(refused) >= 1 and len(EXAMPLES) - len(refused) >= 1


def test_a_block_is_found_whole_and_a_marked_one_by_its_first_line():
    text = "x\n```toml\na = 1\n\nb = 2\n```\n```\nnot = toml\n```\n```toml\n# refused: c: bad\nc = 3\n```\n"
    assert toml_examples(text) == ["a = 1\n\nb = 2\n", "# refused: c: bad\nc = 3\n"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.splitlines()[0][:60])
def test_each_example_is_checked_as_program_check_checks_a_file(example, tmp_path):
    path = tmp_path / "example.toml"
    path.write_text(example, encoding="utf-8")
    if not example.startswith(REFUSED):
        load_program(path)
        return
    expected = example.splitlines()[0].removeprefix(REFUSED)
    with pytest.raises(ProgramError) as refused:
        load_program(path)
    assert str(refused.value) == f"{path}: {expected}"
