"""The strict fake enforces Google's documented rules, so a passing proxy test means a valid payload.

Rules from ai.google.dev/gemini-api/docs/thought-signatures and function-calling: on Gemini 3
the first functionCall part of every step in the current turn carries its signature (parallel
calls: only the first); earlier turns are not validated; function responses pair with the calls
of the model turn right before them, by id when the calls had ids.
"""

from __future__ import annotations

from typing import Any

from gemini_proxy.adapters.simulated.rules import Issued, validate_generate
from tests.fakes.gemini import signature

G3 = "gemini-3-pro-preview"


def call(name: str, cid: str | None = None, sig: str | None = None) -> dict[str, Any]:
    fc: dict[str, Any] = {"name": name, "args": {}}
    if cid:
        fc["id"] = cid
    part: dict[str, Any] = {"functionCall": fc}
    if sig:
        part["thoughtSignature"] = sig
    return part


def result(name: str, cid: str | None = None) -> dict[str, Any]:
    fr: dict[str, Any] = {"name": name, "response": {"output": 1}}
    if cid:
        fr["id"] = cid
    return {"functionResponse": fr}


def user(text: str = "hi") -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def model(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "model", "parts": list(parts)}


def tool(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


def check(contents: list[dict[str, Any]], model_name: str = G3, issued: Issued | None = None) -> str | None:
    return validate_generate(model_name, {"contents": contents}, issued)


def test_parallel_calls_need_the_signature_on_the_first_call_only() -> None:
    ok = [user(), model(call("f", "a", signature(1)), call("f", "b")), tool(result("f", "a"), result("f", "b"))]
    assert check(ok) is None
    missing = [user(), model(call("f", "a"), call("f", "b", signature(1))), tool(result("f", "a"), result("f", "b"))]
    assert "missing a thought_signature" in (check(missing) or "")


def test_every_step_of_the_current_turn_needs_its_signature() -> None:
    steps = [
        user(),
        model(call("f", "a", signature(1))),
        tool(result("f", "a")),
        model(call("g", "b")),  # second step, unsigned
        tool(result("g", "b")),
    ]
    assert "missing a thought_signature" in (check(steps) or "")


def test_earlier_turns_are_not_validated() -> None:
    old_turn = [user(), model(call("f", "a")), tool(result("f", "a")), model({"text": "done"}), user("next")]
    assert check(old_turn) is None


def test_older_models_take_calls_without_signatures_or_ids() -> None:
    assert check([user(), model(call("f")), tool(result("f"))], "gemini-2.5-flash") is None


def test_responses_must_carry_the_ids_of_the_calls() -> None:
    calls = model(call("f", "a", signature(1)), call("f", "b"))
    assert "does not match" in (check([user(), calls, tool(result("f", "a"), result("f"))]) or "")
    assert "does not match" in (check([user(), calls, tool(result("f", "a"), result("f", "zz"))]) or "")
    assert "number of function response parts" in (check([user(), calls, tool(result("f", "a"))]) or "")


def test_a_response_without_a_call_turn_before_it_is_refused() -> None:
    assert "right after a functionCall" in (check([user(), tool(result("f"))], "gemini-2.5-flash") or "")


def test_ids_and_signatures_the_server_never_issued_are_refused() -> None:
    issued = Issued(ids={"a"}, signatures={signature(1)})
    good = [user(), model(call("f", "a", signature(1))), tool(result("f", "a"))]
    assert check(good, issued=issued) is None
    forged_id = [user(), model(call("f", "x", signature(1))), tool(result("f", "x"))]
    assert "not issued" in (check(forged_id, issued=issued) or "")
    forged_sig = [user(), model(call("f", "a", signature(9))), tool(result("f", "a"))]
    assert "Corrupted thought signature" in (check(forged_sig, issued=issued) or "")


def test_thinking_rules() -> None:
    body = {"contents": [user()], "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}
    assert "only works in thinking mode" in (validate_generate("gemini-2.5-pro", body) or "")
    assert validate_generate("gemini-2.5-flash", body) is None
    level = {"contents": [user()], "generationConfig": {"thinkingConfig": {"thinkingLevel": "extreme"}}}
    assert "thinking_level" in (validate_generate(G3, level) or "")
    level["generationConfig"]["thinkingConfig"]["thinkingLevel"] = "low"  # type: ignore[index]
    assert "not supported" in (validate_generate("gemini-2.5-flash", level) or "")


def test_unknown_fields_are_refused_like_google_does() -> None:
    assert "Unknown name" in (
        validate_generate(G3, {"contents": [user()], "generation_config": {"max_tokens": 5}}) or ""
    )


def test_googles_dummy_signatures_pass_the_issued_check() -> None:
    issued = Issued()
    for dummy in ("skip_thought_signature_validator", "context_engineering_is_the_way_to_go"):
        assert check([user(), model(call("f", sig=dummy)), tool(result("f"))], issued=issued) is None
