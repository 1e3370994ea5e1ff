"""`serve` runs on uvloop when it is installed, on asyncio's loop when asked; a typo is a config error."""

from __future__ import annotations

import asyncio

import pytest

from gemini_proxy.cli import loop
from gemini_proxy.config import ConfigError
from tests.conftest import config_toml, make_config


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_asyncio_is_used_when_asked() -> None:
    with loop.runner("asyncio") as runner:
        assert runner.run(_loop_module()) == "asyncio"


def test_auto_picks_uvloop_when_installed() -> None:
    pytest.importorskip("uvloop")
    with loop.runner("auto") as runner:
        assert runner.run(_loop_module()) == "uvloop"


def test_event_loop_defaults_to_auto_and_rejects_unknown_names() -> None:
    assert make_config(config_toml("http://g", "http://o")).server.event_loop == "auto"
    assert make_config(config_toml("http://g", "http://o", server='event_loop = "asyncio"')).server.event_loop == (
        "asyncio"
    )
    with pytest.raises(ConfigError) as info:
        make_config(config_toml("http://g", "http://o", server='event_loop = "tokio"'))
    assert "server.event_loop" in str(info.value) and "uvloop" in str(info.value)
