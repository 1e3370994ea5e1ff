"""Data residency: which of a route's targets a request may use, as one pure function.

An upstream may carry a ``region`` tag; a team and a task may each carry ``allowed_regions``.
A target is usable only when its upstream's region is in every list that applies (an untagged
upstream is outside any list), so a fallback into another region is never tried: the request
fails with a 403 naming the regions instead of leaving them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gemini_proxy.config import Target, UpstreamConfig
from gemini_proxy.errors import PermissionDenied


def allowed_targets(
    targets: Iterable[Target],
    upstreams: Mapping[str, UpstreamConfig],
    *region_lists: tuple[str, ...] | None,
) -> tuple[Target, ...]:
    """The targets whose upstream region is inside every non-None list, in their original order."""
    lists = [frozenset(r) for r in region_lists if r is not None]
    return tuple(t for t in targets if all(upstreams[t.upstream].region in allowed for allowed in lists))


def restrict(
    name: str,
    targets: tuple[Target, ...],
    upstreams: Mapping[str, UpstreamConfig],
    *region_lists: tuple[str, ...] | None,
) -> tuple[Target, ...]:
    """:func:`allowed_targets`, or a 403 ``region_not_allowed`` when none is left."""
    if all(regions is None for regions in region_lists):  # no rule applies (most requests): all of them
        return targets
    kept = allowed_targets(targets, upstreams, *region_lists)
    if kept:
        return kept
    allowed = sorted(set.intersection(*(set(r) for r in region_lists if r is not None)))
    where = ", ".join(f"{t} (region {upstreams[t.upstream].region or 'untagged'})" for t in targets)
    raise PermissionDenied(
        f"{name!r} has no target inside the allowed regions {allowed}: {where}", code="region_not_allowed"
    )
