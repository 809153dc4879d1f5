"""Flat names for grouped settings: pydantic-settings sources that route `VA_MIN_SILENCE_MS` (and the
keyword `min_silence_ms=`) into the field of its group (`turns.min_silence_ms`).

A group is a field of the settings class whose type is a pydantic model; each of its fields has one flat
name: its `validation_alias` where it has one (`backend.base_url` is `openai_base_url`), else its own name.
Both sources route before pydantic-settings merges them, so a keyword overrides its own field of a group
and leaves the group's other fields to the environment.
"""

from __future__ import annotations

import functools
import os
from typing import Any, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsError

from voice_assistant.wire_json import parse_json


class SettingsGroup(BaseModel):
    """One concern's settings. Its fields take their flat name (the alias) as well as their own."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True)


@functools.cache
def flat_names(settings_cls: type[BaseSettings]) -> dict[str, tuple[str, str]]:
    """Flat name -> (group, field) for every field of every group."""
    names: dict[str, tuple[str, str]] = {}
    for group, info in settings_cls.model_fields.items():
        assert isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel), group
        for field, field_info in info.annotation.model_fields.items():
            alias = field_info.validation_alias
            names[alias if isinstance(alias, str) else field] = (group, field)
    return names


def _field(settings_cls: type[BaseSettings], group: str, field: str) -> FieldInfo:
    annotation = settings_cls.model_fields[group].annotation
    assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation.model_fields[field]


def _is_group(settings_cls: type[BaseSettings], key: str, value: Any) -> bool:
    """A name may be a group's and a flat setting's both (`model`): a dict or a model is the group."""
    return key in settings_cls.model_fields and isinstance(value, dict | BaseModel)


def routed(settings_cls: type[BaseSettings], values: dict[str, Any]) -> dict[str, Any]:
    """`min_silence_ms=500` -> `turns={"min_silence_ms": 500}`; a flat name wins over its field in a group
    given beside it. Other names pass as they are (groups, and names that are no setting)."""
    names = flat_names(settings_cls)
    flat = {
        key: value
        for key, value in values.items()
        if key in names and not _is_group(settings_cls, key, value)
    }
    result = {key: value for key, value in values.items() if key not in flat}
    for name, value in flat.items():
        group, field = names[name]
        given = result.get(group, {})
        result[group] = {**(given.model_dump() if isinstance(given, BaseModel) else given), field: value}
    return result


class FlatKeywords(PydanticBaseSettingsSource):
    """The keywords of `Settings(...)`, flat names routed into their groups."""

    def __init__(self, settings_cls: type[BaseSettings], keywords: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._keywords = keywords

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ routes them all at once

    def __call__(self) -> dict[str, Any]:
        return routed(self.settings_cls, self._keywords())


def variable(settings_cls: type[BaseSettings], flat_name: str) -> str:
    """The environment variable of a flat name: `openai_retries` -> `VA_OPENAI_RETRIES`."""
    return (str(settings_cls.model_config.get("env_prefix", "")) + flat_name).upper()


def named_by_variable(exc: ValidationError, settings_cls: type[BaseSettings]) -> ValidationError:
    """`exc` with each field's place named by its variable (`VA_OPENAI_CONNECT_TIMEOUT_S`, not
    `backend.connect_timeout_s`): what the operator set, and the name the README gives. Errors of a whole
    group (its own validators, which name the variables themselves) are left as they are."""
    variables = {where: variable(settings_cls, name) for name, where in flat_names(settings_cls).items()}
    errors: list[InitErrorDetails] = []
    for error in exc.errors():
        loc = error["loc"]
        name = variables.get((str(loc[0]), str(loc[1]))) if len(loc) >= 2 else None
        details: InitErrorDetails = {
            "type": error["type"],
            "loc": (name, *loc[2:]) if name else loc,
            "input": error["input"],
        }
        if "ctx" in error:
            details["ctx"] = error["ctx"]
        errors.append(details)
    return ValidationError.from_exception_data(exc.title, errors)


class FlatEnvironment(PydanticBaseSettingsSource):
    """Each field from its flat variable (`env_prefix` + flat name, case-insensitive), into its group;
    JSON for the fields that hold a dict, a list or a tuple (`VA_SITES`, `VA_END_OF_TURN_JUDGE_MS`) unless
    they are read as text (`NoDecode`: `VA_ICE_ADDRESSES`), as pydantic-settings reads them."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads the whole environment at once

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.config.get("env_prefix", "")).lower()
        environment = {key.lower(): value for key, value in os.environ.items()}
        values: dict[str, dict[str, Any]] = {}
        for name, (group, field) in flat_names(self.settings_cls).items():
            raw: Any = environment.get(prefix + name)
            if raw is None:
                continue
            info = _field(self.settings_cls, group, field)
            if get_origin(info.annotation) in (dict, list, tuple) and NoDecode not in info.metadata:
                try:
                    raw = parse_json(raw)
                except ValueError as exc:
                    where = variable(self.settings_cls, name)
                    raise SettingsError(f"error parsing value for {where} as JSON: {exc}") from exc
            values.setdefault(group, {})[field] = raw
        return values
