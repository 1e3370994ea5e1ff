"""Which upstream models serve a request: pure functions over the parsed config.

Resolution order: the ``x-task`` header, then the ``model`` alias (or a task's name), then a literal
``upstream:model`` when the config allows it. Anything else is a 404 ``model_not_found`` that
lists what is available, in OpenAI's error shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from gemini_proxy.config import Config, Target
from gemini_proxy.errors import InvalidRequest, NotFound
from gemini_proxy.routing.meter import TeamAdmission


@dataclass(frozen=True, slots=True)
class Route:
    """An ordered list of targets: the first is preferred, the rest are fallbacks."""

    name: str  # the alias, task or literal the client used
    kind: str  # "task" | "alias" | "literal"
    targets: tuple[Target, ...]
    task: str | None = None
    builtin_tools: tuple[str, ...] = ()  # the alias's or task's routing.toml `builtin_tools`
    # With Redis: the team's quota, to be taken with the first upstream admission (one round trip).
    team_admission: TeamAdmission | None = None


def resolve(config: Config, model: str | None, task: str | None) -> Route:
    if task:
        spec = config.tasks.get(task)
        if spec is None:
            raise NotFound(
                f"unknown task {task!r} in x-task header; available tasks: {', '.join(sorted(config.tasks)) or 'none'}",
                code="task_not_found",
                param="x-task",
            )
        return Route(name=task, kind="task", targets=spec.targets, task=task, builtin_tools=spec.builtin_tools)
    if not model:
        raise InvalidRequest("'model' is required (an alias such as one listed by GET /v1/models)", param="model")
    alias = config.models.get(model)
    if alias is not None:
        return Route(name=model, kind="alias", targets=alias.targets, builtin_tools=alias.builtin_tools)
    if model in config.tasks:  # clients that cannot set headers may name a task as the model
        spec = config.tasks[model]
        return Route(name=model, kind="task", targets=spec.targets, task=model, builtin_tools=spec.builtin_tools)
    upstream, sep, name = model.partition(":")
    if sep and config.server.allow_literal_targets and upstream in config.upstreams and name:
        return Route(name=model, kind="literal", targets=(Target(upstream, name),))
    available = sorted(config.models)
    hint = f"; available models: {', '.join(available)}" if available else ""
    if config.tasks:
        hint += f"; or send an x-task header with one of: {', '.join(sorted(config.tasks))}"
    raise NotFound(f"The model {model!r} does not exist{hint}", code="model_not_found", param="model")
