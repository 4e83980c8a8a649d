"""Errors → RFC 9457 problem details. The one place domain errors become status codes.

Every problem names the field at fault when there is one (``field``, a dotted path into
the request) and never carries a stack trace."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg.errors
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from kittylab.domain.errors import (
    AuthenticationRequired,
    Busy,
    Conflict,
    DeviceRefused,
    InvalidTransition,
    KittyLabError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    SignatureRejected,
    ValidationFailed,
)
from kittylab.domain.identity import TokenExpired
from kittylab.domain.networks import OutsideTrustedNetworks
from kittylab.manifest.problems import ManifestError
from kittylab.safety.webhook_signature import Refusal, SignatureRefused

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://kittylab.dev/problems/"
MEDIA_TYPE = "application/problem+json"


def problem(
    request: Request,
    status: int,
    kind: str,
    title: str,
    detail: str,
    *,
    field: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """``extensions``: members a problem type adds (RFC 9457 §3.2), e.g. what to do instead."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if field is not None:
        body["field"] = field
    if errors:
        body["errors"] = errors
    if extensions:
        body.update({k: v for k, v in extensions.items() if k not in body})
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["requestId"] = request_id
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def internal_error(request: Request) -> JSONResponse:
    """The answer to a failure that is ours: no details, only the id to find it in the log."""
    return problem(
        request, 500, "internal", "Internal error", "the error was logged with this request's id"
    )


def _error_field(error: Mapping[str, Any]) -> str:
    # A body that is not JSON at all points at a byte offset, not at a field.
    if error.get("type") == "json_invalid":
        return "body"
    return _loc_to_field(error.get("loc", ()))


def _loc_to_field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


# Constraint name fragments → the API field they protect, for database-level backstops.
_CONSTRAINT_FIELDS = {
    "external_id": "externalId",
    "username": "username",
    "context_key": "contextKey",
    "correlation_id": "correlationId",
    "artifact_key": "artifactKey",
    "idempotency_key": "idempotencyKey",
    "zones_name": "name",
    "policies_name": "name",
    "request_id": "requestId",
    # Two approvals racing with one nonce: the loser is a replay.
    "safety_approvals_nonce": "nonce",
}


@dataclass(frozen=True)
class ProblemType:
    """How one kind of domain error is answered: its message becomes the detail, and its
    ``field`` (when it has one) the field at fault, unless ``field`` is fixed here."""

    status: int
    kind: str
    title: str
    field: str | None = None


DOMAIN_PROBLEMS: dict[type[KittyLabError], ProblemType] = {
    ValidationFailed: ProblemType(422, "validation", "Invalid request"),
    InvalidTransition: ProblemType(409, "invalid-transition", "Illegal state transition", "status"),
    Conflict: ProblemType(409, "conflict", "Conflict"),
    DeviceRefused: ProblemType(409, "device-refused", "Refused by the device"),
    PayloadTooLarge: ProblemType(413, "payload-too-large", "Payload too large"),
    NotFound: ProblemType(404, "not-found", "Not found"),
    OutsideTrustedNetworks: ProblemType(
        403, "outside-trusted-networks", "Outside the lab's networks"
    ),
    PermissionDenied: ProblemType(403, "forbidden", "Forbidden"),
    SignatureRejected: ProblemType(403, "signature-rejected", "Signature rejected"),
}
"""The domain errors answered from their message alone. Errors that need more (a list of
problems, headers, a rewording) have their own handler in ``install``. FastAPI picks the
handler of the nearest class in an error's MRO, so a subclass may have its own row."""


def _answer(problem_type: ProblemType) -> Any:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        field = problem_type.field or getattr(exc, "field", None)
        return problem(
            request, problem_type.status, problem_type.kind, problem_type.title, str(exc),
            field=field,
        )  # fmt: skip

    return handler


def install(app: FastAPI) -> None:
    for error_type, problem_type in DOMAIN_PROBLEMS.items():
        app.add_exception_handler(error_type, _answer(problem_type))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _error_field(e), "message": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return problem(
            request,
            422,
            "validation",
            "Invalid request",
            f"{first['field']}: {first['message']}",
            field=first["field"],
            errors=errors,
        )

    @app.exception_handler(ManifestError)
    async def _manifest(request: Request, exc: ManifestError) -> JSONResponse:
        errors = [
            {"field": p.field or "manifest", "message": p.message, "line": str(p.line or "")}
            for p in exc.problems
        ]
        return problem(
            request,
            422,
            "invalid-manifest",
            "Invalid lab manifest",
            str(exc),
            field=exc.field or "manifest",
            errors=errors,
        )

    @app.exception_handler(SignatureRefused)
    async def _webhook_refused(request: Request, exc: SignatureRefused) -> JSONResponse:
        # A signed webhook, not a bearer token: say precisely what was wrong with it.
        field = None if exc.reason is Refusal.NOT_CONFIGURED else "Signature"
        return problem(
            request,
            401,
            "webhook-signature",
            "Webhook signature refused",
            exc.message,
            field=field,
            errors=[{"field": field or "secret", "message": exc.message, "reason": exc.reason}],
        )

    @app.exception_handler(AuthenticationRequired)
    async def _unauthenticated(request: Request, exc: AuthenticationRequired) -> JSONResponse:
        return problem(
            request,
            401,
            "unauthenticated",
            "Authentication required",
            "send a valid API token as 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(TokenExpired)
    async def _token_expired(request: Request, exc: TokenExpired) -> JSONResponse:
        # A token that did work: say it ran out, so its holder asks for a new one.
        return problem(
            request,
            401,
            "token-expired",
            "Token expired",
            f"{exc}; ask an admin for a new one",
            headers={
                "WWW-Authenticate": 'Bearer error="invalid_token", '
                'error_description="the token expired"'
            },
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None) or ""
        field = next((f for k, f in _CONSTRAINT_FIELDS.items() if k in constraint), None)
        if isinstance(exc.orig, psycopg.errors.ForeignKeyViolation):
            return problem(
                request,
                422,
                "validation",
                "Invalid request",
                "a referenced record does not exist",
                field=field,
            )
        return problem(
            request,
            409,
            "conflict",
            "Conflict",
            f"the request conflicts with a stored record ({constraint or 'constraint'})",
            field=field,
        )

    @app.exception_handler(DBAPIError)
    async def _dbapi(request: Request, exc: DBAPIError) -> JSONResponse:
        if isinstance(exc.orig, psycopg.errors.DataError | psycopg.DataError):
            # Values the database cannot hold (NUL bytes, out-of-range numbers).
            return problem(
                request,
                422,
                "validation",
                "Invalid request",
                "a value cannot be stored (NUL characters or out-of-range numbers)",
            )
        if isinstance(exc, OperationalError | InterfaceError):
            # The server is unreachable, restarting or timed out: worth retrying.
            log.error("database unavailable", extra={"error": type(exc.orig).__name__})
            return problem(
                request,
                503,
                "unavailable",
                "Database unavailable",
                "try again shortly",
                headers={"Retry-After": "2"},
            )
        # Anything else (a schema older than the code, a bug in a query) will not get
        # better by retrying: a 500 with the request id, logged in full.
        log.exception("database error", extra={"error": type(exc.orig).__name__})
        return internal_error(request)

    @app.exception_handler(PoolTimeout)
    async def _busy(request: Request, exc: PoolTimeout) -> JSONResponse:
        log.warning("database connection pool exhausted")
        return problem(
            request,
            503,
            "busy",
            "Too busy",
            "all database connections are in use; retry",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Busy)
    async def _no_capacity(request: Request, exc: Busy) -> JSONResponse:
        return problem(
            request,
            503,
            "busy",
            "Too busy",
            str(exc),
            headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_seconds)))},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http")
        # FastAPI answers 400 when it cannot decode a body at all, and 413 when a
        # streamed body passes the size limit: both are about the body.
        field = "body" if exc.status_code in (400, 413) else None
        return problem(
            request,
            exc.status_code,
            kind,
            str(exc.detail),
            str(exc.detail),
            field=field,
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(KittyLabError)
    async def _other(request: Request, exc: KittyLabError) -> JSONResponse:
        log.error("unhandled KittyLab error", extra={"error": type(exc).__name__})
        return problem(request, 503, "unavailable", "Service unavailable", "try again shortly")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return internal_error(request)
