"""Round-trips through the official SDKs' own types: the wire contract, checked strictly.

The SDKs' models accept unknown keys silently (as extras), so parsing alone would not
catch a misspelt or invented field: `assert_round_trip` also requires that nothing
parsed as an extra, anywhere in the object, and that the object serialises back to the
same JSON.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def _extras(value: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(value, BaseModel):
        found += [f"{path}.{key}" for key in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += _extras(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _extras(item, f"{path}[{i}]")
    return found


def assert_round_trip(
    sdk_type: type[Any], data: dict[str, Any], *, as_streamed: bool = False
) -> Any:
    """`data` parses as `sdk_type` with no unknown field and serialises back to itself.

    `as_streamed`: build it as the SDK builds streamed chunks (`construct`, no validation):
    OpenAI streams text completions as `Completion` objects whose `finish_reason` is null
    until the last chunk, which the validating parse would refuse.
    """
    parsed = sdk_type.construct(**data) if as_streamed else sdk_type.model_validate(data)
    assert _extras(parsed) == [], f"fields the SDK does not know: {_extras(parsed)}"
    assert parsed.to_dict(mode="json") == data
    return parsed
