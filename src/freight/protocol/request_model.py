"""The base of every request body model: one error for a bad body, however large it is.

pydantic reports every problem it finds. For a request body that is the wrong trade: a
body with a million unknown keys, or a `stop` list of a million numbers, would build a
million error objects (seconds of CPU and gigabytes of memory) to report the first. So
a body's validation stops at its first problem in any object or list:

- `RequestModel` refuses an object with more than a few unknown fields itself, naming
  the first, before its fields are validated (the error's `field` context says which;
  endpoints.body_error_from and api/errors.py add it to the location). With a few,
  pydantic reports them with the fields' own errors, the most telling of which is
  reported (`{"type": "image", "source": ...}`: the type, not `source`);
- `Items[T]` is a list validated up to its first bad item (pydantic's `fail_fast`).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

T = TypeVar("T")
Items = Annotated[list[T], Field(fail_fast=True)]
UNKNOWN_FIELD = "unknown_field"  # the error type; its context holds the `field`
MANY = 8  # unknown fields in one object, past which only the first is reported


class RequestModel(BaseModel):
    """A request body, or a part of one: unknown fields are refused."""

    # What `_not_many_unknown_fields` enforces, said in the schema (additionalProperties).
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _not_many_unknown_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data.keys() - cls.model_fields.keys()) > MANY:
            names = field_names(cls)
            unknown = [key for key in data if key not in names]
            if len(unknown) > MANY:
                raise PydanticCustomError(
                    UNKNOWN_FIELD,
                    "Unrecognized request argument supplied: {field}",
                    {"field": unknown[0]},
                )
        return data


@functools.cache
def field_names(model: type[BaseModel]) -> frozenset[str]:
    """The names a body may use for `model`'s fields: their own, and their aliases."""
    aliases = (field.alias for field in model.model_fields.values() if field.alias)
    return frozenset([*model.model_fields, *aliases])
