"""The manifest's JSON Schema (draft 2020-12), shipped as package data.

``manifest.schema.json`` describes ``manifest.json`` exactly as
``store.manifest`` writes it, so a field added there without a schema change
fails the tests instead of surprising a downstream reader.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA_NAME = "manifest.schema.json"


@cache
def load_schema() -> dict[str, Any]:
    text = resources.files(__name__).joinpath(SCHEMA_NAME).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate(manifest: Any) -> list[str]:
    """Every way ``manifest`` breaks the schema, one message each (empty when valid)."""
    validator = Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: (e.json_path, e.message))
    return [f"{e.json_path}: {e.message}" for e in errors]
