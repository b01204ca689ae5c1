"""List members: the upsert rules shared by ``PUT /members/{hash}`` and batch subscribe.

Decisions where Mailchimp's documentation is silent or vague (all documented here once):

* **Status.** A new member takes ``status`` if given, else ``status_if_new``; one of them is
  required. An existing member only changes status when ``status`` is given
  (``status_if_new`` is ignored), so an unsubscribed contact stays unsubscribed on an upsert.
* **Archived members** count as new: an upsert re-adds them with the new status (Mailchimp's
  "archived contacts can be re-added"), keeping their tags; they reappear in member lists.
* **Permanently deleted** addresses cannot be re-imported: any status but ``pending`` is
  refused with ``400 Forgotten Email Not Subscribed`` (double opt-in lets the person
  re-subscribe themselves, as Mailchimp advises).
* **Subscriber hash.** The path hash must be the MD5 of the lower-cased address. For an
  existing member a different ``email_address`` changes the member's address (and so its
  id); for a hash that names no member, a body whose address does not hash to it names no
  member either: ``404 Resource Not Found``.
* **Merge fields** must be defined on the list (``/merge-fields``): an unknown tag, a value
  of the wrong type or a missing required field is ``400 Invalid Resource`` with detail
  "Your merge fields were invalid." and an ``errors`` entry per field. (Observed Mailchimp
  silently drops unknown tags; refusing them keeps clients honest about creating fields.)
  ``skip_merge_validation=true`` skips the required-field check only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from .errors import ApiError, field_error, invalid_resource, not_found
from .state import MEMBER_STATUSES, Account, MailingList, Member, hex_id, now
from .validate import check_email, optional, wrong_type

TEXT_MAX = 255


def subscriber_hash(email: str) -> str:
    """MD5 of the lower-cased address: a member's id in every path."""
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def check_status(body: dict[str, Any], key: str) -> str | None:
    """``status``/``status_if_new`` when present: one of the settable statuses."""
    value = optional(body, key, str, "string")
    if value is not None and value not in MEMBER_STATUSES:
        raise field_error(
            key, f"Schema describes enum, value '{value}' is not in {list(MEMBER_STATUSES)}"
        )
    return value


def _merge_value(tag: str, kind: str, value: Any) -> str | None:
    """Why ``value`` cannot go in a merge field of type ``kind`` (``None`` when it can)."""
    if value is None or value == "":
        return None
    if kind == "number":
        if isinstance(value, bool):
            return "Please enter a number"
        if isinstance(value, int | float):
            return None
        try:
            float(str(value))
        except ValueError:
            return "Please enter a number"
        return None
    if kind == "address":
        if isinstance(value, dict) and all(value.get(k) for k in ("addr1", "city", "state", "zip")):
            return None
        return "Please enter a complete address"
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return f"Schema describes string, {type(value).__name__} found instead"
    if len(str(value)) > TEXT_MAX:
        return f"Please enter a value shorter than {TEXT_MAX} characters"
    return None


def check_merge_fields(
    lst: MailingList, raw: Any, existing: dict[str, Any] | None, skip_required: bool
) -> dict[str, Any]:
    """The merge fields after applying ``raw`` to ``existing`` (``None`` for a new member)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise wrong_type("merge_fields", "object", raw)
    errors: list[dict[str, str]] = []
    for tag, value in raw.items():
        merge_field = lst.merge_fields.get(tag)
        if merge_field is None:
            errors.append({"field": tag, "message": "This merge field does not exist."})
            continue
        problem = _merge_value(tag, merge_field.type, value)
        if problem:
            errors.append({"field": tag, "message": problem})
    result = {**(existing or {}), **{k: ("" if v is None else v) for k, v in raw.items()}}
    if not skip_required:
        for merge_field in lst.merge_fields.values():
            if merge_field.required and result.get(merge_field.tag) in (None, ""):
                errors.append({"field": merge_field.tag, "message": "Please enter a value"})
    if errors:
        raise invalid_resource("Your merge fields were invalid.", errors)
    return result


def forgotten(email: str) -> ApiError:
    """Mailchimp's refusal to re-import a permanently deleted address."""
    return ApiError(
        400,
        "Forgotten Email Not Subscribed",
        f"{email} was permanently deleted and cannot be re-imported. "
        "The contact must re-subscribe to get back on the list.",
    )


def member_exists(email: str) -> ApiError:
    """Adding an address the list already holds without ``update_existing``."""
    return ApiError(
        400,
        "Member Exists",
        f"{email} is already a list member. Use PUT to insert or update list members.",
    )


def new_member(account: Account, member_id: str, email: str, status: str) -> Member:
    """A fresh member record (not yet in the list)."""
    stamp = now()
    return Member(
        id=member_id,
        email_address=email,
        status=status,
        unique_email_id=hex_id(10),
        contact_id=hex_id(32),
        web_id=account.web_id(),
        timestamp_signup=stamp,
        last_changed=stamp,
        timestamp_opt=stamp if status == "subscribed" else "",
    )


def upsert_member(
    account: Account,
    lst: MailingList,
    member_id: str | None,
    body: dict[str, Any],
    *,
    update_existing: bool = True,
    skip_merge_validation: bool = False,
    check_fault: Callable[[str], None] | None = None,
) -> tuple[Member, bool]:
    """Create or update one member from a request body; ``(member, created)``.

    ``member_id`` is the path's subscriber hash (``None`` in a batch, where the address
    decides). Validation happens before any change, so a refused body changes nothing.
    """
    email = check_email(body.get("email_address"))
    if check_fault is not None:
        check_fault(email)
    status = check_status(body, "status")
    status_if_new = check_status(body, "status_if_new")
    email_type = optional(body, "email_type", str, "string")
    if email_type is not None and email_type not in ("html", "text"):
        raise field_error("email_type", "Schema describes enum, value is not in ['html', 'text']")
    language = optional(body, "language", str, "string")
    vip = optional(body, "vip", bool, "boolean")
    own_hash = subscriber_hash(email)
    target = lst.members.get(member_id or own_hash)
    if target is None and member_id is not None and member_id != own_hash:
        raise not_found()
    if target is not None and target.id != own_hash and own_hash in lst.members:
        raise member_exists(email)
    is_new = target is None or target.status == "archived"
    if target is not None and not is_new and not update_existing:
        raise member_exists(email)
    new_status = status or (status_if_new if is_new else None)
    if is_new and new_status is None:
        raise field_error("status_if_new", "This value should not be blank.")
    if is_new and email.lower() in lst.forgotten and new_status != "pending":
        raise forgotten(email)
    merge_fields = check_merge_fields(
        lst,
        body.get("merge_fields"),
        target.merge_fields if target is not None else None,
        skip_merge_validation,
    )
    # Everything is valid: apply.
    if target is None:
        target = new_member(account, own_hash, email, new_status or "subscribed")
        lst.members[own_hash] = target
    elif target.id != own_hash:
        del lst.members[target.id]
        target.id = own_hash
        lst.members[own_hash] = target
    if new_status is not None and new_status != target.status:
        if new_status == "subscribed":
            target.timestamp_opt = now()
        target.status = new_status
    target.email_address = email
    target.merge_fields = merge_fields
    if email_type is not None:
        target.email_type = email_type
    if language is not None:
        target.language = language
    if vip is not None:
        target.vip = vip
    target.last_changed = now()
    lst.forgotten.discard(email.lower())
    return target, is_new


def render_member(lst: MailingList, member: Member) -> dict[str, Any]:
    """A member as ``GET /lists/{list_id}/members/{hash}`` answers it."""
    full_name = " ".join(
        str(member.merge_fields.get(tag) or "") for tag in ("FNAME", "LNAME")
    ).strip()
    return {
        "id": member.id,
        "email_address": member.email_address,
        "unique_email_id": member.unique_email_id,
        "contact_id": member.contact_id,
        "full_name": full_name,
        "web_id": member.web_id,
        "email_type": member.email_type,
        "status": member.status,
        "consents_to_one_to_one_messaging": True,
        "merge_fields": {tag: member.merge_fields.get(tag, "") for tag in lst.merge_fields},
        "interests": {},
        "stats": {"avg_open_rate": 0, "avg_click_rate": 0},
        "ip_signup": "",
        "timestamp_signup": member.timestamp_signup,
        "ip_opt": "",
        "timestamp_opt": member.timestamp_opt,
        "member_rating": 2,
        "last_changed": member.last_changed,
        "language": member.language,
        "vip": member.vip,
        "email_client": "",
        "location": {
            "latitude": 0,
            "longitude": 0,
            "gmtoff": 0,
            "dstoff": 0,
            "country_code": "",
            "timezone": "",
            "region": "",
        },
        "source": member.source,
        "tags_count": len(member.tags),
        "tags": [{"id": lst.tag_id(name), "name": name} for name in member.tags],
        "list_id": lst.id,
        "_links": [],
    }


def list_member(lst: MailingList, member_id: str) -> Member:
    """The member ``member_id`` names (archived ones included), else 404."""
    member = lst.members.get(member_id.lower())
    if member is None:
        raise not_found()
    return member
