"""Running bulk profile import jobs in the background: ``queued -> processing -> complete``.

A job waits ``job_delay`` seconds queued, then imports its profiles in chunks at
``import_rate`` profiles per second (default 5,000/s; ``None`` = unthrottled) and ends
``complete``. Each profile is imported alone: one that Klaviyo would refuse (bad email or
phone, no identifier, an injected ``reject_emails`` fault, an identifier another profile
holds, an unknown ``id``, more than 100KB) counts in ``failed_count`` and gets an import
error; the others count in ``completed_count`` and join the job's lists.

Decisions where the docs are silent:

* An import error's ``source.pointer`` locates the profile in the job's request
  (``/data/attributes/profiles/data/<index>/attributes/email``) and its
  ``original_payload`` is the profile resource object as submitted.
* With the ``cancel_jobs`` option set (a reason), a new job ends ``cancelled`` without
  importing anything: every profile is failed, with an import error of code
  ``job_cancelled`` whose detail is the reason. (Klaviyo's job status enum has
  ``cancelled`` but no ``failed``.)
* ``expires_at`` is seven days after completion; jobs are never actually dropped.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from emulators.kit import ApiError

from .errors import TITLES
from .profiles import check_attributes, upsert_profile
from .state import Account, ImportError_, ImportJob, KlaviyoEmulator, new_error_id, timestamp

CHUNK = 250
MAX_PROFILE_BYTES = 100 * 1024


def start_job(emu: KlaviyoEmulator, account: Account, job: ImportJob) -> None:
    """Process ``job`` in a daemon thread; the emulator keeps a handle for tests."""
    thread = threading.Thread(
        target=_run, args=(emu, account, job), name=f"klaviyo-job-{job.id}", daemon=True
    )
    with emu.lock:
        emu.job_threads[:] = [t for t in emu.job_threads if t.is_alive()] + [thread]
    thread.start()


def _run(emu: KlaviyoEmulator, account: Account, job: ImportJob) -> None:
    if emu.job_delay > 0:
        time.sleep(emu.job_delay)
    with emu.lock:
        job.status = "processing"
        job.started_at = timestamp()
    try:
        if job.cancel_reason is not None:
            _cancel(emu, job)
            return
        for start in range(0, len(job.profiles), CHUNK):
            began = time.monotonic()
            with emu.lock:
                for index in range(start, min(start + CHUNK, len(job.profiles))):
                    _import_one(emu, account, job, index)
            rate = emu.import_rate
            if rate:
                pause = CHUNK / rate - (time.monotonic() - began)
                if pause > 0:
                    time.sleep(pause)
    except Exception as exc:  # a bug must not leave a job "processing" forever
        job.cancel_reason = f"internal error: {exc!r}"
        _cancel(emu, job)
        return
    with emu.lock:
        _finish(job, "complete")


def _finish(job: ImportJob, status: str) -> None:
    job.status = status
    job.completed_at = timestamp()
    job.expires_at = (datetime.now(UTC) + timedelta(days=7)).isoformat(timespec="microseconds")


def _cancel(emu: KlaviyoEmulator, job: ImportJob) -> None:
    with emu.lock:
        reason = job.cancel_reason or "The job was cancelled."
        done = job.completed_count + job.failed_count
        for index in range(done, job.total_count):
            profile = job.profiles[index]
            job.errors.append(
                ImportError_(
                    id=new_error_id(),
                    code="job_cancelled",
                    title="Job cancelled.",
                    detail=reason,
                    pointer=f"/data/attributes/profiles/data/{index}",
                    original_payload=profile,
                )
            )
        job.failed_count = job.total_count - job.completed_count
        _finish(job, "cancelled")


def _import_one(emu: KlaviyoEmulator, account: Account, job: ImportJob, index: int) -> None:
    item = job.profiles[index]
    pointer = f"/data/attributes/profiles/data/{index}"
    try:
        attributes: dict[str, Any] = item.get("attributes") or {}
        if len(json.dumps(item)) > MAX_PROFILE_BYTES:
            raise ApiError(
                400,
                "invalid",
                "The maximum allowed payload size per profile is 100KB.",
                details={"source": {"pointer": pointer}},
            )
        check_attributes(attributes, bool(item.get("id")), f"{pointer}/attributes")
        email = attributes.get("email")
        if isinstance(email, str):
            rule = emu.faults.for_email(email)
            if rule is not None:
                emu.stats.faulted += 1
                error = rule.email_error(email)
                error.details["source"] = {"pointer": f"{pointer}/attributes/email"}
                raise error
        profile, _ = upsert_profile(
            account, attributes, item.get("meta"), item.get("id"), f"{pointer}/attributes"
        )
    except ApiError as exc:
        job.failed_count += 1
        source = exc.details.get("source") or {}
        job.errors.append(
            ImportError_(
                id=new_error_id(),
                code=exc.code,
                title=TITLES.get(exc.code, "Invalid input."),
                detail=exc.message,
                pointer=str(source.get("pointer") or pointer),
                original_payload=item,
            )
        )
        return
    now = timestamp()
    for list_id in job.list_ids:
        klist = account.lists.get(list_id)
        if klist is not None:
            klist.members.setdefault(profile.id, now)
    job.profile_ids.append(profile.id)
    job.completed_count += 1
