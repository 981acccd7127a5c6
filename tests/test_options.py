"""``run --namespace``: a comma-separated list and/or the flag repeated, one name as before,
nothing for every namespace; a name that is not a namespace name is one clear error naming
the flag (the CLI prints it as one line, exit status 2)."""

from __future__ import annotations

import argparse

import pytest

from controller.options import OptionError, RunOptions, add_run_arguments


def _options(*args: str) -> RunOptions:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_run_arguments(parser)
    return RunOptions.from_args(parser.parse_args(list(args)), environ={})


@pytest.mark.parametrize(
    ("args", "namespaces"),
    [
        ((), ()),
        (("--namespace", ""), ()),
        (("--namespace", "team-a"), ("team-a",)),
        (("--namespace=team-a,team-b",), ("team-a", "team-b")),
        (("--namespace", "team-a", "--namespace", "team-b"), ("team-a", "team-b")),
        (("--namespace", "b, a", "--namespace", "a,c"), ("b", "a", "c")),
    ],
)
def test_namespaces_are_a_list_or_a_repeated_flag(
    args: tuple[str, ...], namespaces: tuple[str, ...]
) -> None:
    assert _options(*args).namespaces == namespaces


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Team_A", "--namespace 'Team_A' is not a valid namespace name"),
        ("a,-b", "--namespace '-b' is not a valid namespace name"),
        ("a.b", "--namespace 'a.b' is not a valid namespace name"),
        ("x" * 64, f"--namespace '{'x' * 64}' is not a valid namespace name"),
        ("a,,b", "--namespace 'a,,b': empty namespace name in the list"),
        ("a,", "--namespace 'a,': empty namespace name in the list"),
    ],
)
def test_a_bad_namespace_is_an_error_naming_the_flag(value: str, message: str) -> None:
    with pytest.raises(OptionError) as err:
        _options("--namespace", value)
    assert str(err.value).startswith(message), err.value


def test_controllers_name_each_cloud_and_keep_the_old_spelling_with_a_warning() -> None:
    default = _options()
    assert [default.runs(n) for n in ("machinepool", "inmemory", "aws")] == [True, True, False]
    assert default.controller_deprecations() == []
    old = _options("--controllers", "machinepool,infrastructure,infrastructure")
    assert old.runs("inmemory")
    assert old.controller_deprecations() == [
        "--controllers infrastructure is deprecated; use inmemory"
    ]
    with pytest.raises(OptionError, match="--controllers: unknown"):
        _options("--controllers", "machines")
