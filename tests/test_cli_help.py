"""The first hour (issue 20): every option explains itself with its default and choices, one registry
names the methods for the CLI and the API, and a missing input is one line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from synthaudit.app.cli import build_parser, main
from synthaudit.models.methods import available_methods


def _subcommand(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("command", ["audit", "compare", "bench"])
def test_every_option_has_a_help_line(command: str) -> None:
    parser = _subcommand(command)
    silent = [a.option_strings[0] for a in parser._actions if a.option_strings and not a.help]
    assert not silent, f"{command}: options without help: {silent}"
    text = parser.format_help()
    assert "(default: 5)" in text or command == "bench" or "--k" not in text  # defaults are shown


def test_the_method_choices_come_from_the_registry(capsys) -> None:  # type: ignore[no-untyped-def]
    text = _subcommand("audit").format_help()
    for name in available_methods():
        assert name in text
    with pytest.raises(SystemExit):
        main(["audit", "--real", ".", "--generated", ".", "--method", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    from synthaudit.app.schemas import AuditConfigIn

    description = AuditConfigIn.model_json_schema()["properties"]["method"]["description"]
    assert all(name in description for name in available_methods())


def test_a_missing_labels_file_is_one_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "r").mkdir()
    code = main(
        ["audit", "--real", str(tmp_path / "r"), "--generated", str(tmp_path / "r"), "--labels", "nofile.csv"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err == "synthaudit: --labels nofile.csv does not exist\n"
