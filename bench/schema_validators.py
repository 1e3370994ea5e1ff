"""Which JSON Schema validator should check structured answers? Time them on our typical schemas.

Run: python bench/schema_validators.py   (needs jsonschema; jsonschema-rs and fastjsonschema when
installed). Prints microseconds per validation of a valid and an invalid answer, plus whether each
library caught a draft 2020-12 ``prefixItems`` violation (pydantic emits it for tuples).
"""

from __future__ import annotations

import enum
import timeit
from typing import Any

from pydantic import BaseModel

TICKET = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "category": {"type": "string", "enum": ["billing", "bug", "feature", "account", "other"]},
        "risk_level": {"type": "string", "enum": ["low", "medium", "high"]},
        "need_review": {"type": "boolean"},
    },
    "required": ["summary", "category", "risk_level", "need_review"],
    "additionalProperties": False,
}


class Level(enum.StrEnum):
    low = "low"
    high = "high"


class Item(BaseModel):
    name: str
    qty: int
    level: Level


class Order(BaseModel):
    id: str
    items: list[Item]
    note: str | None
    span: tuple[int, int]


def cases() -> list[tuple[str, dict[str, Any], Any, Any]]:
    order = Order.model_json_schema()
    good_order = {"id": "o1", "items": [{"name": "a", "qty": 1, "level": "low"}] * 5, "note": None, "span": [1, 2]}
    bad_order = {**good_order, "span": [1, "x"]}
    good_ticket = {"summary": "s", "category": "bug", "risk_level": "low", "need_review": False}
    bad_ticket = {**good_ticket, "risk_level": "extreme"}
    return [("ticket", TICKET, good_ticket, bad_ticket), ("pydantic order", order, good_order, bad_order)]


def main() -> None:
    import jsonschema

    libs: dict[str, Any] = {}
    libs["jsonschema"] = lambda s: jsonschema.validators.validator_for(s)(s).is_valid
    try:
        import jsonschema_rs

        libs["jsonschema-rs"] = lambda s: jsonschema_rs.validator_for(s).is_valid
    except ImportError:
        pass
    try:
        import fastjsonschema

        def fast(s: dict[str, Any]) -> Any:
            check = fastjsonschema.compile(s)

            def ok(x: Any) -> bool:
                try:
                    check(x)
                    return True
                except fastjsonschema.JsonSchemaException:
                    return False

            return ok

        libs["fastjsonschema"] = fast
    except ImportError:
        pass
    n = 20000
    for name, schema, good, bad in cases():
        for lib, make in libs.items():
            is_valid = make(schema)
            t_good = timeit.timeit(lambda f=is_valid, x=good: f(x), number=n) / n * 1e6
            t_bad = timeit.timeit(lambda f=is_valid, x=bad: f(x), number=n) / n * 1e6
            print(
                f"{name:15} {lib:15} valid {t_good:7.2f} us  invalid {t_bad:7.2f} us  "
                f"correct={is_valid(good) and not is_valid(bad)}"
            )


if __name__ == "__main__":
    main()
