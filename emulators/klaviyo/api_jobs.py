"""Bulk profile import jobs: create (202), read, and read their import errors.

Creating a job validates the request as a whole (schema, at most 10,000 profiles, the
lists exist); the profiles themselves are checked one by one while the job runs
(see :mod:`.jobs`). A list that does not exist is a 400 ``invalid`` pointing at its id.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .api_lists import list_document
from .common import account_of
from .errors import invalid, not_found
from .jobs import start_job
from .jsonapi import (
    answer,
    base_url,
    check_include,
    page_links,
    page_offset,
    page_size,
    read_body,
)
from .state import ImportJob, new_ulid, timestamp

MAX_PROFILES = 10_000


def job_document(job: ImportJob, base: str) -> dict[str, Any]:
    """The ``profile-bulk-import-job`` resource object."""
    link = f"{base}/api/profile-bulk-import-jobs/{job.id}/"
    return {
        "type": "profile-bulk-import-job",
        "id": job.id,
        "attributes": {
            "status": job.status,
            "created_at": job.created_at,
            "total_count": job.total_count,
            "completed_count": job.completed_count,
            "failed_count": job.failed_count,
            "completed_at": job.completed_at,
            "expires_at": job.expires_at,
            "started_at": job.started_at,
        },
        "relationships": {
            "lists": {
                "data": [{"type": "list", "id": list_id} for list_id in job.list_ids],
                "links": {"self": f"{link}relationships/lists/", "related": f"{link}lists/"},
            },
            "profiles": {
                "links": {"self": f"{link}relationships/profiles/", "related": f"{link}profiles/"}
            },
            "import-errors": {"links": {"related": f"{link}import-errors/"}},
        },
        "links": {"self": link},
    }


async def create_job(request: Request) -> JSONResponse:
    """Accept a job of up to 10,000 profiles and start it."""
    body = await read_body(request, "/api/profile-bulk-import-jobs")
    data = body["data"]
    profiles = data["attributes"]["profiles"]["data"]
    if not profiles:
        raise invalid("At least one profile is required.", "/data/attributes/profiles/data")
    if len(profiles) > MAX_PROFILES:
        raise invalid(
            f"A job accepts at most {MAX_PROFILES} profiles; got {len(profiles)}.",
            "/data/attributes/profiles/data",
        )
    lists = ((data.get("relationships") or {}).get("lists") or {}).get("data") or []
    emu, account = account_of(request)
    with emu.lock:
        for index, item in enumerate(lists):
            if item["id"] not in account.lists:
                raise invalid(
                    f"The list {item['id']} does not exist.",
                    f"/data/relationships/lists/data/{index}/id",
                )
        job = ImportJob(
            id=new_ulid(),
            created_at=timestamp(),
            profiles=profiles,
            list_ids=list(dict.fromkeys(item["id"] for item in lists)),
            cancel_reason=emu.cancel_jobs,
        )
        account.jobs[job.id] = job
        document = job_document(job, base_url(request))
    start_job(emu, account, job)
    return answer({"data": document, "links": {"self": str(request.url)}}, 202)


async def get_job(request: Request) -> JSONResponse:
    """A job's status and counts (``include=lists`` adds its lists)."""
    check_include(request, ("lists",))
    emu, account = account_of(request)
    job_id = request.path_params["job_id"]
    with emu.lock:
        job = account.jobs.get(job_id)
        if job is None:
            raise not_found(f"A bulk import job with id {job_id} does not exist.")
        body: dict[str, Any] = {
            "data": job_document(job, base_url(request)),
            "links": {"self": str(request.url)},
        }
        if request.query_params.get("include") == "lists":
            body["included"] = [
                list_document(account.lists[i], base_url(request))
                for i in job.list_ids
                if i in account.lists
            ]
    return answer(body)


async def get_import_errors(request: Request) -> JSONResponse:
    """The profiles a job could not import, in submission order, paginated."""
    size = page_size(request)
    offset = page_offset(request)
    emu, account = account_of(request)
    job_id = request.path_params["id"]
    with emu.lock:
        job = account.jobs.get(job_id)
        if job is None:
            raise not_found(f"A bulk import job with id {job_id} does not exist.")
        errors = list(job.errors)
    data = [
        {
            "type": "import-error",
            "id": error.id,
            "attributes": {
                "code": error.code,
                "title": error.title,
                "detail": error.detail,
                "source": {"pointer": error.pointer},
                "original_payload": error.original_payload,
            },
        }
        for error in errors[offset : offset + size]
    ]
    return answer({"data": data, "links": page_links(request, offset, size, len(errors))})


ROUTES = [
    Route("/api/profile-bulk-import-jobs", create_job, methods=["POST"]),
    Route("/api/profile-bulk-import-jobs/{job_id}", get_job, methods=["GET"]),
    Route("/api/profile-bulk-import-jobs/{id}/import-errors", get_import_errors, methods=["GET"]),
]
