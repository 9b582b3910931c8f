"""Options declared once, on the Config fields: the command line, the config file, the
environment and Config.from_options all read the same declarations."""

from __future__ import annotations

import dataclasses

import pytest

from fetcher import extras
from fetcher.cli import DECLARED, HELP_GROUPS, afetch, config_keys
from fetcher.config import Config, ConfigError, Run, default_of
from fetcher.options import GROUPS


def test_the_command_line_defaults_are_the_default_config() -> None:
    """No option given: exactly Config() and Run(), so a default is written only on its field."""
    ctx = afetch.make_context("afetch", ["example.com"])
    assert Config.from_options(ctx.params) == Config()
    assert Run.from_options(ctx.params) == Run()


def test_flat_values_build_the_nested_config() -> None:
    """As httpx.AsyncClient(timeout=5.0) takes a plain number: text is parsed as typed."""
    config = Config.from_options(
        {"timeout": 2.5, "insecure": True, "json": True, "format": "csv", "header": ["A: 1"]}
    )
    assert config.timeouts == dataclasses.replace(Config().timeouts, total=2.5)
    assert config.request.verify is False and config.request.headers == (("A", "1"),)
    assert config.output.format == "jsonl"  # --json wins over the --format it stands for
    assert config.limits == Config().limits  # what is not given keeps its default
    assert Config.from_options({"ports": "80,443"}).ports == (80, 443)
    with pytest.raises(ConfigError, match="concurrency must be at least 1, got 0"):
        Config.from_options({"concurrency": 0})


def test_every_flag_changes_its_field() -> None:
    for cls, path, spec in DECLARED:
        if spec.flag:
            assert default_of(cls, path) != spec.sets, spec.flags


def test_empty_text_parses_to_the_field_default() -> None:
    """A parsed option's command-line default is "": it must mean the field's default."""
    for cls, path, spec in DECLARED:
        if spec.parse is not None and not spec.multiple:
            assert spec.parse("") == default_of(cls, path), spec.flags


def test_every_option_has_a_help_group_and_one_name() -> None:
    names = [spec.name for _, _, spec in DECLARED]
    assert len(names) == len(set(names))
    assert {spec.group for _, _, spec in DECLARED} == set(GROUPS) == set(HELP_GROUPS)
    configurable = {spec.key for _, _, spec in DECLARED if spec.configurable}
    assert configurable == set(config_keys(afetch))


def test_the_bounds_are_checked_for_library_callers_too() -> None:
    """The bound the click type enforces comes from the same declaration as the dataclass's."""
    bounded = [(cls, path, spec) for cls, path, spec in DECLARED if spec.minimum is not None]
    assert len(bounded) >= 6
    for cls, path, spec in bounded:
        part, _, name = path.rpartition(".")
        owner = type(default_of(cls, part)) if part else cls
        below = spec.minimum if spec.above else spec.minimum - 1  # type: ignore[operator]
        with pytest.raises(ConfigError, match=f"^{spec.key} must be "):
            owner(**{name: below})


def test_a_missing_extra_says_what_to_install() -> None:
    absent = extras.Extra("afetch_no_such_module", "--thing needs it: pip install thing")
    assert absent.load() is None and not absent.available
    with pytest.raises(ConfigError, match="^--thing needs it: pip install thing$"):
        absent.require()
    assert extras.Extra("json", "").require().__name__ == "json"


def test_a_parsed_option_takes_a_value_already_parsed() -> None:
    """click's contract for a type: a default or a value converted once comes through as is."""
    from fetcher.cli import Parsed

    [ports] = [spec for _, _, spec in DECLARED if spec.key == "ports"]
    assert Parsed(ports).convert((80, 443), None, None) == (80, 443)
    assert Parsed(ports).convert("80,443", None, None) == (80, 443)
