"""Request and response bodies. Field names follow seed 002's Audience Sync Object."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.config import get_settings
from shared.domain.mapping import FieldMapping, MappingError
from shared.schedules import parse_zone, validate_cron

SyncModeName = Literal["add", "remove", "mirror", "upsert"]
SettableStatus = Literal["draft", "active", "paused"]


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("must be a UUID") from None


def validate_schedule(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    return validate_cron(value, allow_seconds=get_settings().cron_seconds)


def validate_sync_config(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """The sync settings the engine reads; anything else is kept for the user."""
    if value is None:
        return None
    share = value.get("max_removal_share")
    if share is not None and (
        isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1
    ):
        raise ValueError("config.max_removal_share must be a number between 0 and 1")
    minimum = value.get("removal_guard_min")
    if minimum is not None and (
        isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 0
    ):
        raise ValueError("config.removal_guard_min must be a whole number of records, 0 or more")
    return value


def validate_timezone(value: str) -> str:
    parse_zone(value)
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldMappingItem(Strict):
    """One destination field: from a source column (or a constant), optionally transformed."""

    source_column: str | None = Field(default=None, min_length=1, max_length=200)
    destination_field: str = Field(min_length=1, max_length=200)
    constant: Any = None
    default: Any = None
    transforms: list[str | dict[str, Any]] = Field(
        default_factory=list,
        description="applied in order: trim, lowercase, uppercase, normalize_email, e164 or "
        '{"e164": "GB"}, sha256, first_name, last_name, {"date_format": "%Y-%m-%d"}',
    )

    @model_validator(mode="after")
    def _known_transforms(self) -> FieldMappingItem:
        try:
            FieldMapping.parse_one(self.stored())
        except MappingError as exc:
            raise ValueError(str(exc).replace("field_mapping[0]: ", "")) from None
        return self

    def stored(self) -> dict[str, Any]:
        return self.model_dump(exclude_defaults=True)


class AudienceSyncCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    audience_id: str
    destination_id: str
    field_mapping: list[FieldMappingItem] = Field(min_length=1)
    sync_mode: SyncModeName
    schedule: str | None = None
    timezone: str = Field(default="UTC", description="IANA time zone the schedule is read in")
    catch_up: bool = Field(
        default=True, description="after downtime, fire once for the latest missed tick"
    )
    config: dict[str, Any] = Field(default_factory=dict)
    split_group_id: str | None = None
    status: SettableStatus = "active"

    _ids = field_validator("audience_id", "destination_id")(_uuid)
    _cron = field_validator("schedule")(validate_schedule)
    _zone = field_validator("timezone")(validate_timezone)
    _config = field_validator("config")(validate_sync_config)


class AudienceSyncUpdate(Strict):
    """Same fields as create; only those sent change."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    audience_id: str | None = None
    destination_id: str | None = None
    field_mapping: list[FieldMappingItem] | None = Field(default=None, min_length=1)
    sync_mode: SyncModeName | None = None
    schedule: str | None = None
    timezone: str | None = None
    catch_up: bool | None = None
    config: dict[str, Any] | None = None
    split_group_id: str | None = None
    status: SettableStatus | None = None

    _cron = field_validator("schedule")(validate_schedule)
    _config = field_validator("config")(validate_sync_config)

    @field_validator("timezone")
    @classmethod
    def _optional_zone(cls, value: str | None) -> str | None:
        return None if value is None else validate_timezone(value)

    @field_validator("audience_id", "destination_id")
    @classmethod
    def _optional_uuid(cls, value: str | None) -> str | None:
        return None if value is None else _uuid(value)


class AudienceSyncOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    workspace_id: str
    audience_id: str
    destination_id: str
    name: str
    description: str
    field_mapping: list[dict[str, Any]]
    sync_mode: SyncModeName
    schedule: str | None
    timezone: str
    catch_up: bool
    next_run_at: datetime | None = Field(
        default=None, description="when the schedule fires next (active syncs with a schedule)"
    )
    config: dict[str, Any]
    status: Literal["draft", "active", "paused", "error"]
    status_error: str
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    last_synced_at: datetime | None
    last_run_id: str | None
    split_group_id: str | None


class RunErrorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    member_key: str
    operation: str
    status_code: int | None
    message: str
    created_at: datetime


class SyncRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    sync_id: str
    workspace_id: str
    trigger: str
    status: Literal["pending", "running", "succeeded", "partial", "failed", "skipped"]
    sync_mode: SyncModeName
    error: str
    scheduled_for: datetime | None = Field(
        default=None, description="the cron tick a scheduled run (or skip) was for"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    planned_total: int
    processed: int
    added: int
    updated: int
    removed: int
    unchanged: int
    failed: int
    destination_requests: int
    delivery_paths: dict[str, int] = Field(
        default_factory=dict, description="records sent per path: per_record, bulk"
    )
    allow_mass_removal: bool = False


class TriggerRequest(Strict):
    allow_mass_removal: bool = Field(
        default=False,
        description="let this one run remove more than the sync's removal guard allows",
    )


class DestinationCheck(BaseModel):
    ok: bool
    message: str


class SyncRunDetail(SyncRunOut):
    errors: list[RunErrorOut] = Field(
        default_factory=list, description="Records the destination refused (first 100)."
    )


class DestinationCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    type: str
    config: dict[str, Any] = Field(default_factory=dict)
    credentials: dict[str, Any]


class DestinationOut(BaseModel):
    """Credentials are write-only: the API never returns them, not even masked."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    workspace_id: str
    name: str
    type: str
    config: dict[str, Any]
    has_credentials: bool = True
    created_at: datetime
    updated_at: datetime


class SchedulePreview(BaseModel):
    schedule: str
    timezone: str
    next_runs: list[datetime]


class Deleted(BaseModel):
    status: Literal["deleted"] = "deleted"
