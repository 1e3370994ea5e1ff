"""The ``[logging]`` config section: where log lines go and who may have their text logged.

Prompt and answer text are never logged by default: they may hold personal data that must
stay in the region it was sent to (data residency). A team or task can opt in explicitly,
e.g. while debugging a prompt, and the text is then cut to ``content_max_chars``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gemini_proxy.config.table import Table


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    file: str | None = None  # request lines go here instead of stdout (``--log-file`` overrides)
    log_content_tasks: frozenset[str] = field(default_factory=frozenset)
    log_content_teams: frozenset[str] = field(default_factory=frozenset)
    content_max_chars: int = 10_000

    def wants_content(self, team: str | None, task: str | None) -> bool:
        return (task is not None and task in self.log_content_tasks) or (
            team is not None and team in self.log_content_teams
        )


def parse_logging(t: Table) -> LoggingConfig:
    def names(key: str) -> frozenset[str]:
        value = t.pop(key, list, [])
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise t.error(f"{key}[{i}]", "must be a string (a task or team name)")
        return frozenset(value)

    defaults = LoggingConfig()
    cfg = LoggingConfig(
        file=t.pop("file", str),
        log_content_tasks=names("log_content_tasks"),
        log_content_teams=names("log_content_teams"),
        content_max_chars=t.positive("content_max_chars", int, defaults.content_max_chars),
    )
    t.done()
    return cfg
