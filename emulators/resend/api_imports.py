"""``/contacts/imports``: the bulk path for getting many contacts in at once."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .common import account_of, emulator_state, json, list_body
from .errors import missing_field, not_found, validation_error
from .importer import ImportJob, parse_plan, read_csv
from .pagination import parse_page_request
from .state import ContactImport, new_id, timestamp

MAX_FILE_BYTES = 50 * 1024 * 1024
STATUSES = ("queued", "in_progress", "completed", "failed")


def render_import(job: ContactImport) -> dict[str, Any]:
    """``ContactImport`` from the spec (``completed_at`` is null until done)."""
    return {
        "object": "contact_import",
        "id": job.id,
        "status": job.status,
        "created_at": job.created_at,
        "completed_at": job.completed_at,
        "counts": dict(job.counts),
    }


def _form_text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise validation_error(f"The `{field}` field must be a string.")
    return value


async def create_import(request: Request) -> JSONResponse:
    """``POST /contacts/imports`` (multipart): validate now, process in the background.

    Problems with the request itself (no file, bad ``column_map``, unknown property,
    segment or column) are answered 422 immediately. A file that is not UTF-8 text
    is accepted and the import ends ``failed``, like an asynchronous job would.
    Bad rows (e.g. an invalid email) only count as ``failed`` in the job's counts.
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise validation_error("The request body must be multipart/form-data.")
    async with request.form(max_part_size=MAX_FILE_BYTES) as form:
        upload = form.get("file")
        if upload is None:
            raise missing_field("file")
        if not isinstance(upload, UploadFile):
            raise validation_error("The `file` field must be a file upload.")
        raw = await upload.read()
        column_map = _form_text(form.get("column_map"), "column_map")
        on_conflict = _form_text(form.get("on_conflict"), "on_conflict")
        segments = _form_text(form.get("segments"), "segments")
        topics = _form_text(form.get("topics"), "topics")
    if len(raw) > MAX_FILE_BYTES:
        raise validation_error("The CSV file must be at most 50MB.")
    state = emulator_state(request)
    try:
        text: str | None = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    header, rows = read_csv(text) if text is not None else ([], [])
    with state.lock:
        account = account_of(request)
        plan = None
        if text is not None:
            plan = parse_plan(account, header, column_map, on_conflict, segments, topics)
        job = ContactImport(id=new_id(), created_at=timestamp())
        account.imports[job.id] = job
        account.import_order.add(job.id)
        if plan is None:
            job.status = "failed"
            job.error = "the file is not UTF-8 text"
            job.completed_at = timestamp()
    if plan is not None:
        ImportJob(state, account, job, plan, rows, header).start()
    return json({"object": "contact_import", "id": job.id}, 201)


async def list_imports(request: Request) -> JSONResponse:
    """``GET /contacts/imports``, optionally filtered by ``status``."""
    page = parse_page_request(request.query_params, paginate_by_default=True)
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        raise validation_error(f"The `status` parameter must be one of {', '.join(STATUSES)}.")
    with emulator_state(request).lock:
        account = account_of(request)
        imports = account.imports

        def matches(job_id: str) -> bool:
            return status is None or imports[job_id].status == status

        ids, has_more = account.import_order.page(page, matches)
        return json(list_body((imports[i] for i in ids), render_import, has_more))


async def get_import(request: Request) -> JSONResponse:
    """``GET /contacts/imports/{id}``."""
    with emulator_state(request).lock:
        job = account_of(request).imports.get(request.path_params["id"])
        if job is None:
            raise not_found("Contact import")
        return json(render_import(job))


ROUTES = [
    Route("/contacts/imports", create_import, methods=["POST"]),
    Route("/contacts/imports", list_imports, methods=["GET"]),
    Route("/contacts/imports/{id}", get_import, methods=["GET"]),
]
"""Must be mounted before ``/contacts/{id}`` so ``imports`` is not read as an id."""
