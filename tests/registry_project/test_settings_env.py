"""``registry_project.env``: settings read from the environment refuse bad values by name."""

from __future__ import annotations

import pytest

from registry_project.env import ConfigError, env_int


@pytest.mark.parametrize("raw", ["", "  "])
def test_an_unset_or_empty_integer_is_the_default(monkeypatch, raw):
    monkeypatch.setenv("MODELYARD_TEST_INT", raw)
    assert env_int("MODELYARD_TEST_INT", 7, minimum=1) == 7


def test_an_integer_may_use_separators_and_must_reach_its_minimum(monkeypatch):
    monkeypatch.setenv("MODELYARD_TEST_INT", "1_000")
    assert env_int("MODELYARD_TEST_INT", 7, minimum=1) == 1000
    monkeypatch.setenv("MODELYARD_TEST_INT", "0")
    assert env_int("MODELYARD_TEST_INT", 7) == 0
    with pytest.raises(ConfigError, match=r"MODELYARD_TEST_INT=0: give a whole number of at least 1"):
        env_int("MODELYARD_TEST_INT", 7, minimum=1)
    monkeypatch.setenv("MODELYARD_TEST_INT", "soon")
    with pytest.raises(ConfigError, match="MODELYARD_TEST_INT='soon' is not an integer"):
        env_int("MODELYARD_TEST_INT", 7, minimum=1)
