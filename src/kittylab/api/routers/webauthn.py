"""``/api/webauthn``: the console's passkey ceremonies (issue 17). Enrolling a passkey with
a one-time link (``kittylab users invite NAME``), and signing in with it; both answer a
console session cookie (``api/web_auth.py``). The console's pages run these; a program
uses an API token instead.

Signing in works from anywhere (a remote session can only read, as with any credential);
enrolling a passkey works from the lab's trusted networks only, like enrolling an
approver key (issue 13)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field

from kittylab.adapters.db.tables import Passkey, User
from kittylab.api import networks, web_auth
from kittylab.api.auth import UnitOfWork, container
from kittylab.api.schemas import CamelModel, StrictInput
from kittylab.bootstrap import Container
from kittylab.domain.networks import FORWARDING_HEADERS, OutsideTrustedNetworks, origin
from kittylab.people import passkeys, web_sessions

router = APIRouter(prefix="/api/webauthn", tags=["console"])

Invite = Annotated[str, Field(min_length=8, max_length=200, description="The link's secret.")]


class RegistrationStart(StrictInput):
    invite: Invite


class RegistrationFinish(StrictInput):
    invite: Invite
    challenge_id: UUID
    credential: dict[str, Any] = Field(description="The browser's PublicKeyCredential as JSON.")
    name: str = Field("passkey", max_length=100, description="What to call this passkey.")


class SignInFinish(StrictInput):
    challenge_id: UUID
    credential: dict[str, Any] = Field(description="The browser's PublicKeyCredential as JSON.")


class CeremonyOut(CamelModel):
    challenge_id: UUID
    public_key: dict[str, Any] = Field(description="Options for navigator.credentials.")


class SignedIn(CamelModel):
    username: str
    redirect: str = "/"


def ceremony_out(ceremony: passkeys.Ceremony) -> CeremonyOut:
    return CeremonyOut(challenge_id=ceremony.challenge_id, public_key=ceremony.public_key)


def _enrol_from_lab_only(request: Request, c: Container) -> None:
    if not networks.is_trusted(request, c.settings.http):
        raise OutsideTrustedNetworks("enrolling a passkey")


@router.post("/register/options", response_model=CeremonyOut)
def registration_options(
    body: RegistrationStart,
    request: Request,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> CeremonyOut:
    """Start enrolling a passkey with an enrolment link's secret: 404 unknown, 409 used
    or expired."""
    _enrol_from_lab_only(request, c)
    rp = web_auth.relying_party(c.settings.console)
    return ceremony_out(passkeys.registration_options(uow, rp, body.invite, c.clock()))


@router.post("/register", response_model=SignedIn)
def register(
    body: RegistrationFinish,
    request: Request,
    response: Response,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> SignedIn:
    """Keep the new passkey, spend the link, and sign in (a session cookie)."""
    _enrol_from_lab_only(request, c)
    now = c.clock()
    passkey = passkeys.register(
        uow,
        web_auth.relying_party(c.settings.console),
        invite_token=body.invite,
        challenge_id=body.challenge_id,
        credential=body.credential,
        origin=request.headers.get("origin"),
        name=body.name,
        now=now,
    )
    return _signed_in(request, response, uow, c, passkey)


@router.post("/sign-in/options", response_model=CeremonyOut)
def sign_in_options(uow: UnitOfWork, c: Annotated[Container, Depends(container)]) -> CeremonyOut:
    """Start signing in with any passkey enrolled here."""
    rp = web_auth.relying_party(c.settings.console)
    return ceremony_out(passkeys.authentication_options(uow, rp, c.clock()))


@router.post("/sign-in", response_model=SignedIn)
def sign_in(
    body: SignInFinish,
    request: Request,
    response: Response,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> SignedIn:
    """Verify the passkey's answer and sign in (a session cookie); 401 when it does not
    verify or the passkey is not enrolled here."""
    return _signed_in(request, response, uow, c, verified_passkey(body, request, uow, c))


def verified_passkey(
    body: SignInFinish, request: Request, uow: UnitOfWork, c: Container
) -> Passkey:
    """The passkey whose answer to the sign-in challenge verified (401 otherwise): a
    console sign-in's, or a tap on a wall terminal's."""
    return passkeys.authenticate(
        uow,
        web_auth.relying_party(c.settings.console),
        challenge_id=body.challenge_id,
        credential=body.credential,
        origin=request.headers.get("origin"),
        now=c.clock(),
    )


def client_address(request: Request, c: Container) -> str | None:
    """The client's address as the trusted-networks rule sees it (through the lab's
    proxies), for the sessions list."""
    headers = request.headers
    found = origin(
        request.client.host if request.client is not None else None,
        headers.getlist("x-forwarded-for"),
        forwarding_headers=any(name in headers for name in FORWARDING_HEADERS),
        proxies=c.settings.http.trusted_proxies,
    )
    return str(found) if found is not None else None


def _signed_in(
    request: Request, response: Response, uow: UnitOfWork, c: Container, passkey: Passkey
) -> SignedIn:
    issued = web_sessions.start(
        uow,
        passkey.user_id,
        passkey_id=passkey.id,
        limits=web_auth.limits(c.settings.console),
        now=c.clock(),
        user_agent=request.headers.get("user-agent", ""),
        address=client_address(request, c),
    )
    web_auth.set_session_cookie(response, request, c, issued)
    user = uow.get(User, passkey.user_id)
    return SignedIn(username=user.username if user is not None else "")
