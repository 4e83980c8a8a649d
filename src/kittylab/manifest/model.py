"""The lab manifest as typed specs, and the rules a manifest must follow.

``build_manifest`` turns the plain data of a parsed YAML document into a ``LabManifest``.
It reports every problem it finds, not only the first, each under the dotted path of the
offending field (``devices[3].zone``); the loader adds file and line. Field rules are the
domain's own (``validate_roles``, ``build_capabilities``, ``effective_dual_confirm`` …), so
a manifest accepts exactly what the rest of KittyLab would store.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar, cast

from kittylab.domain.devices import (
    INTENT_CATALOGUE,
    JsonSchema,
    build_capabilities,
    validate_external_id,
)
from kittylab.domain.enums import DeviceKind, HazardLevel, PresenceSource, Role
from kittylab.domain.errors import ValidationFailed
from kittylab.domain.gcode_policy import POLICY_ATTRIBUTE, policy_from_attributes
from kittylab.domain.identity import (
    validate_display_name,
    validate_optional_email,
    validate_roles,
    validate_username,
)
from kittylab.domain.materials import POLICY_KEY
from kittylab.domain.zones import (
    effective_dual_confirm,
    validate_presence_sources,
    validate_required_roles,
)
from kittylab.manifest.fields import Fields, connection_problems, public_key_problem
from kittylab.manifest.problems import ManifestError, ManifestProblem
from kittylab.safety.signatures import parse_public_key

_T = TypeVar("_T")
_E = TypeVar("_E", bound=Enum)
_K = TypeVar("_K", bound=Hashable)

MANIFEST_VERSION = 1
DEFAULT_INTEGRATION = "simulated"

# Zone names and integrations become MQTT topic levels and URL path segments.
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass(frozen=True)
class ZoneSpec:
    name: str
    hazard_level: HazardLevel
    requires_ppe: bool = False
    unifi_door_ids: tuple[str, ...] = ()
    # The presence sources that count here (issue 13); None: the hazard level's default.
    presence_sources: tuple[PresenceSource, ...] | None = None


@dataclass(frozen=True)
class DeviceSpec:
    """A device as declared. ``connection`` keeps ``${ENV_VAR}`` references verbatim: the
    device adapter expands them when it connects, so no secret is ever stored."""

    external_id: str
    kind: DeviceKind
    zone: str
    integration: str
    display_name: str
    aliases: tuple[str, ...]
    capabilities: dict[str, JsonSchema]
    connection: dict[str, Any]
    attributes: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        """The identity a device keeps across applies."""
        return (self.integration, self.external_id)


@dataclass(frozen=True)
class KeySpec:
    name: str
    public_key: str


@dataclass(frozen=True)
class UserSpec:
    """A person. ``keys`` is ``None`` when the manifest does not manage this user's keys
    (they are then registered with ``kittylab keys`` and left alone by an apply)."""

    username: str
    display_name: str
    email: str | None
    roles: tuple[Role, ...]
    tailscale_id: str | None
    keys: tuple[KeySpec, ...] | None
    # The UniFi Access user id whose granted door accesses check this person in.
    unifi_id: str | None = None


@dataclass(frozen=True)
class PolicySpec:
    """An access policy with the zone's hazard already applied: in a high-hazard zone
    ``requires_dual_confirm`` and ``requires_presence`` are always true."""

    name: str
    zone: str
    intents: tuple[str, ...]
    required_roles: tuple[Role, ...]
    requires_dual_confirm: bool
    requires_presence: bool
    pqe_checks: dict[str, Any]
    presence_of: str = "initiator"


@dataclass(frozen=True)
class LabManifest:
    zones: tuple[ZoneSpec, ...]
    devices: tuple[DeviceSpec, ...]
    users: tuple[UserSpec, ...]
    policies: tuple[PolicySpec, ...]

    def zone(self, name: str) -> ZoneSpec:
        """The zone of that name; ``KeyError`` when there is none."""
        return _find(self.zones, lambda z: z.name == name, name)

    def device(self, external_id: str, integration: str = DEFAULT_INTEGRATION) -> DeviceSpec:
        return _find(self.devices, lambda d: d.key == (integration, external_id), external_id)

    def user(self, username: str) -> UserSpec:
        return _find(self.users, lambda u: u.username == username, username)

    def policy(self, name: str) -> PolicySpec:
        return _find(self.policies, lambda p: p.name == name, name)


def _find(items: Iterable[_T], match: Callable[[_T], bool], key: str) -> _T:
    for item in items:
        if match(item):
            return item
    raise KeyError(key)


_TOP = ("version", "zones", "devices", "users", "policies")
_ZONE = ("name", "hazard_level", "requires_ppe", "unifi_door_ids", "presence_sources")
_DEVICE = (
    "external_id", "kind", "zone", "integration", "display_name",
    "aliases", "capabilities", "connection", "attributes",
)  # fmt: skip
_USER = ("username", "display_name", "email", "roles", "tailscale_id", "unifi_id", "keys")
_KEY = ("name", "public_key")
_POLICY = (
    "name", "zone", "intents", "required_roles",
    "requires_dual_confirm", "requires_presence", "presence_of", "pqe_checks",
    "hazardous_materials",
)  # fmt: skip


def build_manifest(data: object) -> LabManifest:
    """Validate parsed manifest data and return its specs.

    Raises ``ManifestError`` listing every problem found, each with the path of its field.
    Cross-references are checked too: devices and policies must name declared zones,
    device keys, usernames and policy names must be unique, an alias must not name another
    device, and each (zone, intent) is governed by at most one policy."""
    problems: list[ManifestProblem] = []
    if data is None:
        raise ManifestError([ManifestProblem("", "the manifest is empty")])
    top = Fields(problems, "", data, _TOP)
    if top.has("version") and top.raw("version") != MANIFEST_VERSION:
        top.fail("version", f"only version {MANIFEST_VERSION} is understood")

    zone_entries = _entries(top, "zones")
    # Names are taken as written, even from entries with other mistakes, so one bad zone
    # does not also produce an "unknown zone" on each of its devices, and duplicates are
    # found in the same pass as everything else.
    zone_names = _unique(problems, zone_entries, "name", lambda raw: _raw_text(raw, "name"))
    zones = [_zone(problems, path, raw) for path, raw in zone_entries]

    device_entries = _entries(top, "devices")
    _unique(problems, device_entries, "external_id", _raw_device_key)
    devices = [(path, _device(problems, path, raw, zone_names)) for path, raw in device_entries]
    _check_aliases(problems, devices)

    user_entries = _entries(top, "users")
    _unique(problems, user_entries, "username", lambda raw: _raw_text(raw, "username"))
    # One badge, one person: a UniFi id on two people would check in the wrong one.
    _unique(problems, user_entries, "unifi_id", lambda raw: _raw_text(raw, "unifi_id"))
    users = [_user(problems, path, raw) for path, raw in user_entries]

    policy_entries = _entries(top, "policies")
    _unique(problems, policy_entries, "name", lambda raw: _raw_text(raw, "name"))
    known_intents = set(INTENT_CATALOGUE) | _custom_intents(device_entries)
    hazards = {z.name: z.hazard_level for z in zones if z is not None}
    policies = [
        (path, _policy(problems, path, raw, zone_names, hazards, known_intents))
        for path, raw in policy_entries
    ]
    _check_policy_overlap(problems, policies)

    if problems:
        raise ManifestError(problems)
    return LabManifest(
        zones=tuple(z for z in zones if z is not None),
        devices=tuple(d for _, d in devices if d is not None),
        users=tuple(u for u in users if u is not None),
        policies=tuple(p for _, p in policies if p is not None),
    )


def _entries(top: Fields, key: str) -> list[tuple[str, object]]:
    raw = top.raw(key)
    if raw is None:
        return []
    if not isinstance(raw, list):
        top.fail(key, "must be a list of entries, each starting with '-'")
        return []
    return [(f"{key}[{i}]", item) for i, item in enumerate(raw)]


def _raw_text(raw: object, key: str) -> str | None:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def _raw_device_key(raw: object) -> tuple[str, str] | None:
    external_id = _raw_text(raw, "external_id")
    if external_id is None:
        return None
    return (_raw_text(raw, "integration") or DEFAULT_INTEGRATION, external_id)


def _unique(
    problems: list[ManifestProblem],
    entries: list[tuple[str, object]],
    field: str,
    key_of: Callable[[object], _K | None],
) -> set[_K]:
    """The keys written in ``entries``; a key seen a second time is a problem."""
    first: dict[_K, str] = {}
    for path, raw in entries:
        key = key_of(raw)
        if key is None:
            continue
        if key in first:
            shown = f"{key[1]!r} in integration {key[0]!r}" if isinstance(key, tuple) else repr(key)
            message = f"duplicate {field} {shown}; first declared at {first[key]}"
            problems.append(ManifestProblem(f"{path}.{field}", message))
        else:
            first[key] = path
    return set(first)


def _zone(problems: list[ManifestProblem], path: str, raw: object) -> ZoneSpec | None:
    f = Fields(problems, path, raw, _ZONE)
    name = f.text("name")
    if name is not None and not _SLUG.fullmatch(name):
        f.fail("name", "must be lower-case letters, digits, '-' or '_', such as 'laser-room'")
    hazard = f.choice("hazard_level", HazardLevel)
    requires_ppe = f.flag("requires_ppe")
    doors = f.texts("unifi_door_ids", max_length=128)
    sources = _presence_sources(f)
    if not f.ok or name is None or hazard is None or doors is None:
        return None
    return ZoneSpec(name, hazard, requires_ppe, tuple(doors), sources)


def _presence_sources(f: Fields) -> tuple[PresenceSource, ...] | None:
    """Which presence sources count in the zone; left out, the hazard level's default."""
    if not f.has("presence_sources"):
        return None
    names = f.texts("presence_sources", max_length=16, required=True)
    if names is None:
        return None
    sources = f.domain(lambda: validate_presence_sources(names))
    return tuple(sources) if sources is not None else None


def _device(
    problems: list[ManifestProblem], path: str, raw: object, zone_names: set[str]
) -> DeviceSpec | None:
    f = Fields(problems, path, raw, _DEVICE)
    text_id = f.text("external_id", max_length=None)
    external_id = f.domain(lambda: validate_external_id(text_id)) if text_id else None
    kind = f.choice("kind", DeviceKind)
    zone = f.text("zone")
    if zone is not None and zone not in zone_names:
        declared = ", ".join(sorted(zone_names)) or "none"
        f.fail("zone", f"unknown zone {zone!r}; declared zones: {declared}")
    integration = f.text("integration", required=False, max_length=64) or DEFAULT_INTEGRATION
    if not _SLUG.fullmatch(integration):
        f.fail("integration", "must be a lower-case name such as 'simulated' or 'octoprint'")
    aliases = f.texts("aliases", max_length=100)
    named = f.text("display_name", required=False, max_length=None)
    # Deep-copied: the catalogue's schemas are shared, and a spec must not alias them.
    capabilities = copy.deepcopy(_capabilities(f, kind))
    connection = f.mapping("connection")
    if connection is not None:
        for at, message in connection_problems(connection, f.at("connection")):
            f.fail_at(at, message)
    attributes = _attributes(f, kind)
    if (
        not f.ok
        or external_id is None
        or kind is None
        or zone is None
        or aliases is None
        or capabilities is None
        or connection is None
        or attributes is None
    ):
        return None
    # The name people see defaults to what they call it, then to the id.
    display = f.domain(lambda: validate_display_name(named or next(iter(aliases), external_id)))
    if display is None:
        return None
    return DeviceSpec(
        external_id, kind, zone, integration, display, tuple(aliases),
        capabilities, connection, attributes,
    )  # fmt: skip


def _capabilities(f: Fields, kind: DeviceKind | None) -> dict[str, JsonSchema] | None:
    """Omitted: the kind's defaults. A list: standard intents. A mapping: intent → payload
    schema, ``null`` meaning the standard schema (custom intents must give one)."""
    declared = f.raw("capabilities")
    if isinstance(declared, list):
        names = f.texts("capabilities", max_length=64, required=True)
        if names is None:
            return None
        for i, name in enumerate(names):
            if name not in INTENT_CATALOGUE:
                f.fail_at(f"{f.at('capabilities')}[{i}]", _unknown_intent(name, INTENT_CATALOGUE))
        if not f.ok or kind is None:
            return None
        return f.domain(lambda: build_capabilities(kind, names))
    if declared is not None:
        schemas = f.mapping("capabilities")
        if schemas is None:
            return None
        if not schemas:
            f.fail("capabilities", "must name at least one intent, or be left out for defaults")
            return None
        if kind is None:
            return None
        return f.domain(
            lambda: build_capabilities(kind, cast(Mapping[str, JsonSchema | None], schemas))
        )
    return build_capabilities(kind, None) if kind is not None else None


def _unknown_intent(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"did you mean {close[0]!r}?" if close else "a custom intent needs a payload schema"
    return f"{name!r} is not a known intent; {hint}"


def _attributes(f: Fields, kind: DeviceKind | None) -> dict[str, Any] | None:
    """Free-form, except ``measures`` (a sensor's channels), ``description`` and
    ``gcode_policy`` (a printer's limits, ``kittylab.domain.gcode_policy``)."""
    attributes = f.mapping("attributes")
    if attributes is None:
        return None
    if POLICY_ATTRIBUTE in attributes:
        if kind is not None and kind is not DeviceKind.PRINTER:
            f.fail_at(f.at(f"attributes.{POLICY_ATTRIBUTE}"), "only printers have a G-code policy")
        else:
            try:
                policy_from_attributes(attributes)
            except ValidationFailed as exc:
                f.fail_at(f.at(f"attributes.{exc.field}"), exc.message)
    measures = attributes.get("measures")
    at = f.at("attributes.measures")
    if measures is None:
        if kind is DeviceKind.SENSOR:
            # Without channels nobody can ask the sensor a question it understands.
            f.fail_at(at, "a sensor must list what it measures, such as [temperature]")
    elif not isinstance(measures, list) or not measures:
        f.fail_at(at, "must be a non-empty list such as [temperature, humidity]")
    else:
        for i, item in enumerate(measures):
            if not isinstance(item, str) or not item.strip():
                f.fail_at(f"{at}[{i}]", "must be non-empty text")
            elif measures.index(item) != i:
                f.fail_at(f"{at}[{i}]", f"{item!r} is listed twice")
    description = attributes.get("description")
    if description is not None and not isinstance(description, str):
        f.fail_at(f.at("attributes.description"), "must be text")
    return attributes


def _check_aliases(
    problems: list[ManifestProblem], devices: list[tuple[str, DeviceSpec | None]]
) -> None:
    # The understanding layer resolves a spoken name to exactly one device.
    owners = {s.external_id.casefold(): s.external_id for _, s in devices if s is not None}
    for path, spec in devices:
        if spec is None:
            continue
        for i, alias in enumerate(spec.aliases):
            owner = owners.setdefault(alias.casefold(), spec.external_id)
            if owner != spec.external_id:
                problems.append(
                    ManifestProblem(f"{path}.aliases[{i}]", f"{alias!r} already names {owner!r}")
                )


def _custom_intents(device_entries: list[tuple[str, object]]) -> set[str]:
    intents: set[str] = set()
    for _, raw in device_entries:
        declared = raw.get("capabilities") if isinstance(raw, dict) else None
        if isinstance(declared, dict):
            intents.update(k for k in declared if isinstance(k, str))
    return intents


def _user(problems: list[ManifestProblem], path: str, raw: object) -> UserSpec | None:
    f = Fields(problems, path, raw, _USER)
    username = f.text("username", max_length=64)
    if username is not None:
        f.domain(lambda: validate_username(username))
    named = f.text("display_name", required=False, max_length=None)
    display = f.domain(lambda: validate_display_name(named))
    address = f.text("email", required=False, max_length=None)
    email = f.domain(lambda: validate_optional_email(address))
    role_names = f.texts("roles")
    roles = f.domain(lambda: validate_roles(role_names)) if role_names is not None else None
    tailscale_id = f.text("tailscale_id", required=False, max_length=128)
    unifi_id = f.text("unifi_id", required=False, max_length=128)
    keys = _keys(f, problems) if f.has("keys") else None
    if not f.ok or username is None or display is None or roles is None:
        return None
    return UserSpec(username, display, email, tuple(roles), tailscale_id, keys, unifi_id)


def _keys(f: Fields, problems: list[ManifestProblem]) -> tuple[KeySpec, ...] | None:
    raw = f.raw("keys")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        f.fail("keys", "must be a list of {name, public_key} entries")
        return None
    names: dict[str, str] = {}
    materials: dict[str, str] = {}
    keys: list[KeySpec] = []
    for i, item in enumerate(raw):
        k = Fields(problems, f"{f.at('keys')}[{i}]", item, _KEY)
        name = k.text("name")
        public_key = k.text("public_key", max_length=16_384)
        if public_key is not None and (problem := public_key_problem(public_key)):
            k.fail("public_key", problem)
        if not k.ok or name is None or public_key is None:
            f.ok = False
            continue
        public_key = canonical_key_text(public_key)
        if name in names:
            k.fail("name", f"{name!r} is already used at {names[name]}")
        elif key_material(public_key) in materials:
            k.fail("public_key", f"is the same key as {materials[key_material(public_key)]}")
        else:
            names[name] = materials[key_material(public_key)] = k.path
            keys.append(KeySpec(name, public_key))
    return tuple(keys)


def canonical_key_text(public_key: str) -> str:
    """The text stored for a key: one OpenSSH line, whatever form (PEM, ``ed25519:``) it
    was written in. ``public_key`` has passed ``public_key_problem``."""
    return parse_public_key(public_key).text


def key_material(public_key: str) -> str:
    """What identifies a public key: its type and data, without the trailing comment, so
    editing a comment does not make it a different key (nor writing it in another form).
    A stored key the verifier cannot read is compared by its first two words."""
    try:
        return parse_public_key(public_key).material
    except ValidationFailed:
        return " ".join(public_key.split()[:2])


def _policy(
    problems: list[ManifestProblem],
    path: str,
    raw: object,
    zone_names: set[str],
    hazards: Mapping[str, HazardLevel],
    known_intents: set[str],
) -> PolicySpec | None:
    f = Fields(problems, path, raw, _POLICY)
    name = f.text("name")
    zone = f.text("zone")
    if zone is not None and zone not in zone_names:
        f.fail("zone", f"unknown zone {zone!r}")
    materials = _hazardous_materials(f)
    # A policy may govern print materials only: then it needs no intents.
    intents = f.texts("intents", max_length=64, required=not materials)
    # A misspelt intent would leave the real one ungoverned, so unknown names are refused.
    for i, intent in enumerate(intents or ()):
        if intent not in known_intents:
            f.fail_at(f"{f.at('intents')}[{i}]", _unknown_intent(intent, known_intents))
    role_names = f.texts("required_roles")
    roles = (
        f.domain(lambda: validate_required_roles(role_names)) if role_names is not None else None
    )
    dual = f.flag("requires_dual_confirm")
    presence = f.flag("requires_presence")
    presence_of = f.text("presence_of", required=False, max_length=16) or "initiator"
    if presence_of not in ("initiator", "approver"):
        f.fail(
            "presence_of", "must be 'initiator' (the person asking) or 'approver' (each approver)"
        )
    pqe_checks = _pqe_checks(f)
    if pqe_checks is not None and materials:
        # Kept with the policy's PPE checks (one JSONB column; ``fabrication.materials``).
        pqe_checks = {**pqe_checks, MATERIALS_KEY: materials}
    hazard = hazards.get(zone or "")
    if not f.ok or name is None or zone is None or intents is None or roles is None:
        return None
    if hazard is None or pqe_checks is None:
        return None  # the zone itself is invalid and already reported
    return PolicySpec(
        name=name,
        zone=zone,
        intents=tuple(intents),
        required_roles=tuple(roles),
        requires_dual_confirm=effective_dual_confirm(hazard, dual),
        # The data model: high-hazard zones enforce presence as well as two approvers.
        requires_presence=presence or hazard is HazardLevel.HIGH,
        pqe_checks=pqe_checks,
        presence_of=presence_of,
    )


MATERIALS_KEY = POLICY_KEY


def _hazardous_materials(f: Fields) -> dict[str, Any] | None:
    """``hazardous_materials: {fume_extraction: true, ppe: [respirator]}``: before a print
    of a hazardous material (``domain.materials``) starts in the zone, a device of the zone
    declared with ``attributes: {role: fume_extraction}`` must be on, and/or the PPE
    confirmed with the job. Unknown keys are refused (a misspelt one would drop the rule)."""
    raw = f.raw(MATERIALS_KEY)
    if raw is None:
        return None
    rule = Fields(f.problems, f.at(MATERIALS_KEY), raw, ("fume_extraction", "ppe"))
    extraction = rule.flag("fume_extraction")
    ppe = rule.texts("ppe", max_length=64)
    if not rule.ok or ppe is None:
        f.ok = False
        return None
    if not extraction and not ppe:
        f.fail(MATERIALS_KEY, "must ask for fume_extraction: true or list ppe")
        return None
    return {"fume_extraction": extraction, "ppe": ppe}


def _pqe_checks(f: Fields) -> dict[str, Any] | None:
    """PPE to confirm before acting: ``{required: [safety_glasses, …]}``. Only ``required``
    is accepted, because a misspelt key would silently drop the check."""
    checks = Fields(f.problems, f.at("pqe_checks"), f.raw("pqe_checks") or {}, ("required",))
    required = checks.texts("required", max_length=64)
    if not checks.ok or required is None:
        f.ok = False
        return None
    return {"required": required} if required else {}


def _check_policy_overlap(
    problems: list[ManifestProblem], policies: list[tuple[str, PolicySpec | None]]
) -> None:
    # Two policies over one intent in one zone would leave the evaluator to guess.
    governed: dict[tuple[str, str], str] = {}
    for path, spec in policies:
        if spec is None:
            continue
        for i, intent in enumerate(spec.intents):
            owner = governed.setdefault((spec.zone, intent), spec.name)
            if owner != spec.name:
                problems.append(
                    ManifestProblem(
                        f"{path}.intents[{i}]",
                        f"{intent!r} in zone {spec.zone!r} is already governed by {owner!r}",
                    )
                )


__all__ = [
    "DEFAULT_INTEGRATION",
    "MANIFEST_VERSION",
    "DeviceSpec",
    "KeySpec",
    "LabManifest",
    "ManifestError",
    "ManifestProblem",
    "PolicySpec",
    "UserSpec",
    "ZoneSpec",
    "build_manifest",
    "key_material",
]
