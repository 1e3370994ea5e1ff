"""[retry], [limits], [lanes], task lane and degrade_to: parsed once, typos are errors."""

from __future__ import annotations

import pytest

from gemini_proxy.config import Config, ConfigError, Target
from tests.conftest import config_toml, make_config


def cfg(extra: str) -> Config:
    return make_config(config_toml("http://127.0.0.1:1", "http://127.0.0.1:2/v1", extra))


def test_defaults_apply_when_no_section_is_written() -> None:
    res = cfg("").resilience
    assert res.policy("google", None).server_retries == 2
    assert res.lanes["batch"].rate_share == 0.8 and res.limits == {}


def test_task_override_wins_over_upstream_override_over_defaults() -> None:
    res = cfg(
        "[retry]\nserver_retries = 3\nmax_server_delay_s = 10\n"
        "[retry.upstreams.google]\nserver_retries = 1\n"
        "[retry.tasks.summary]\ntimeout_retries = 0\n"
    ).resilience
    assert res.policy("gateway", None).server_retries == 3
    google_summary = res.policy("google", "summary")
    assert (google_summary.server_retries, google_summary.timeout_retries) == (1, 0)
    assert google_summary.max_server_delay_s == 10
    assert res.policy("google", "classification").timeout_retries == 1


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[retry]\nserver_retrys = 3\n", "retry.server_retrys"),
        ("[retry.upstreams.nope]\nserver_retries = 1\n", "retry.upstreams.nope"),
        ("[limits.nope]\nrpm = 1\n", "limits.nope"),
        ("[limits.google]\nrpm = 0\n", "limits.google.rpm"),
        ("[limits.google]\nrps = 1\n", "limits.google.rps"),
        ("[lanes.vip]\nqueue_size = 1\n", "lanes.vip"),
        ("[lanes.batch]\nmin_concurrency = 9\nmax_concurrency = 2\n", "lanes.batch.min_concurrency"),
        ("[lanes.batch]\nrate_share = 1.5\n", "lanes.batch.rate_share"),
        ('[tasks.x]\nmodel = "fast"\nlane = "slow"\n', "tasks.x.lane"),
        ('[models.y]\ntarget = "google:m"\ndegrade_to = "nowhere:m"\n', "models.y.degrade_to"),
    ],
)
def test_mistakes_name_the_key(extra: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg(extra)
    assert info.value.key == key


def test_task_lane_and_degrade_to_inherit_from_alias() -> None:
    config = cfg(
        '[models.busy]\ntarget = "google:gemini-2.5-pro"\ndegrade_to = "google:gemini-2.5-flash-lite"\n'
        '[tasks.nightly]\nmodel = "busy"\nlane = "batch"\n'
    )
    task = config.tasks["nightly"]
    assert task.lane == "batch" and task.degrade_to == Target("google", "gemini-2.5-flash-lite")
    assert config.tasks["summary"].lane == "online"
