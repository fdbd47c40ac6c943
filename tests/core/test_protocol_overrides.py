"""The one ``key=value`` option parser shared by the CLI, the panel and the batch script."""

from __future__ import annotations

import pytest

from backend.protocol import ProtocolError, parse_overrides


def test_pairs_become_strings_keyed_by_name() -> None:
    parsed = parse_overrides(["num_stages=1", " lr = 0.5 ", "flag="])
    assert parsed == {"num_stages": "1", "lr": "0.5", "flag": ""}


@pytest.mark.parametrize("item", ["num_stages", "=1", " =x"])
def test_items_without_a_key_or_equals_are_bad_options(item: str) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_overrides([item])
    assert err.value.code == "bad_option" and "key=value" in str(err.value)
