"""The command line offers what the methods declare, from the one place (issue 23): methods, presets
and job defaults from ``backend.methods``/``backend.protocol``, option names from each ``Options``."""

from __future__ import annotations

import pytest

from backend.cli import build_parser, main
from backend.methods import METHOD_MODULES, options_class
from backend.options import JOB_DEFAULTS, option_names
from backend.protocol import MASK_SOURCES, PRESETS

METHODS = list(METHOD_MODULES)


def test_each_method_declares_the_protocol_presets() -> None:
    for method in METHODS:
        assert list(options_class(method).PRESETS) == list(PRESETS), method


def test_the_command_line_offers_the_declared_methods_presets_and_defaults() -> None:
    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    actions = {a.dest: a for a in subcommands["reconstruct"]._actions}
    assert (list(actions["method"].choices), actions["method"].default) == (METHODS, JOB_DEFAULTS["method"])
    assert (list(actions["preset"].choices), actions["preset"].default) == (
        list(PRESETS),
        JOB_DEFAULTS["preset"],
    )
    assert (list(actions["mask"].choices), actions["mask"].default) == (
        list(MASK_SOURCES),
        JOB_DEFAULTS["mask"],
    )
    assert (actions["seed"].default, actions["device"].default) == (
        JOB_DEFAULTS["seed"],
        JOB_DEFAULTS["device"],
    )


@pytest.mark.parametrize("method", METHODS)
def test_the_options_command_lists_exactly_the_declared_options(method: str, capsys) -> None:
    assert main(["options", "--method", method]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = [line.split()[0] for line in lines if line.startswith("  ") and not line.startswith("      ")]
    assert listed == list(option_names(options_class(method)))
