"""Loading and validating the lab manifest: the demo lab, and errors that say where."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from kittylab.domain.devices import DEFAULT_INTENTS, INTENT_CATALOGUE
from kittylab.domain.enums import DeviceKind, HazardLevel, Role
from kittylab.domain.errors import DomainError
from kittylab.manifest import ManifestError, load_manifest, parse_manifest

# A small valid manifest; each error test breaks one line of it.
BASE = """\
zones:
  - name: shop
    hazard_level: low
  - name: hot-room
    hazard_level: high
    requires_ppe: true
devices:
  - external_id: shop-lights
    kind: light
    zone: shop
    aliases: [shop lights]
  - external_id: torch
    kind: power
    zone: hot-room
users:
  - username: sam
    display_name: Sam Safety
    email: sam@lab.example
    roles: [safety]
policies:
  - name: hot-room-hazards
    zone: hot-room
    intents: [power_on]
    required_roles: [safety]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, fragment: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``fragment``."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if fragment in line]
    return hits[occurrence - 1]


def error_for(tmp_path: Path, text: str) -> ManifestError:
    path = write(tmp_path, text)
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    return caught.value


def the_problem(error: ManifestError, field: str) -> tuple[int | None, str]:
    matches = [p for p in error.problems if p.field == field]
    assert matches, f"no problem at {field}; got:\n{error}"
    return matches[0].line, matches[0].message


# --- the demo lab ------------------------------------------------------------------------


def test_demo_lab_declares_the_five_zones_with_their_hazards(demo_lab_path: Path) -> None:
    lab = load_manifest(demo_lab_path)
    assert {z.name: (z.hazard_level, z.requires_ppe) for z in lab.zones} == {
        "print-farm": (HazardLevel.LOW, False),
        "electronics-bench": (HazardLevel.LOW, False),
        "cnc-room": (HazardLevel.MEDIUM, True),
        "laser-room": (HazardLevel.HIGH, True),
        "welding-bay": (HazardLevel.HIGH, True),
    }


def test_demo_lab_declares_the_eighteen_simulated_devices(demo_lab_path: Path) -> None:
    lab = load_manifest(demo_lab_path)
    assert {d.external_id: (d.kind.value, d.zone) for d in lab.devices} == {
        "prusa-mk4": ("printer", "print-farm"),
        "voron-24": ("printer", "print-farm"),
        "bambu-x1c": ("printer", "print-farm"),
        "farm-cam": ("camera", "print-farm"),
        "farm-lights": ("light", "print-farm"),
        "farm-climate": ("sensor", "print-farm"),
        "bench-lights": ("light", "electronics-bench"),
        "cnc-lights": ("light", "cnc-room"),
        "cnc-door": ("door", "cnc-room"),
        "cnc-spindle": ("power", "cnc-room"),
        "laser-door": ("door", "laser-room"),
        "laser-power": ("power", "laser-room"),
        "laser-cam": ("camera", "laser-room"),
        "welding-lights": ("light", "welding-bay"),
        "welding-door": ("door", "welding-bay"),
        "welder-power": ("power", "welding-bay"),
        "welding-cam": ("camera", "welding-bay"),
        "fume-sensor": ("sensor", "welding-bay"),
    }
    assert len(lab.devices) == 18
    assert {d.integration for d in lab.devices} == {"simulated"}


def test_demo_devices_have_the_aliases_people_use(demo_lab_path: Path) -> None:
    lab = load_manifest(demo_lab_path)
    assert {"Prusa", "MK4"} <= set(lab.device("prusa-mk4").aliases)
    assert {"Voron", "Voron 2.4"} <= set(lab.device("voron-24").aliases)
    assert {"Bambu", "X1C"} <= set(lab.device("bambu-x1c").aliases)
    assert {"welder", "welding machine"} <= set(lab.device("welder-power").aliases)
    assert "laser cutter" in lab.device("laser-power").aliases
    assert "farm lights" in lab.device("farm-lights").aliases
    assert lab.device("prusa-mk4").display_name == "Prusa"


def test_demo_sensors_list_their_channels(demo_lab_path: Path) -> None:
    lab = load_manifest(demo_lab_path)
    assert lab.device("farm-climate").attributes["measures"] == ["temperature", "humidity"]
    assert lab.device("fume-sensor").attributes["measures"] == ["air_quality"]


def test_demo_lab_has_a_user_for_every_role_and_two_safety_approvers(
    demo_lab_path: Path,
) -> None:
    lab = load_manifest(demo_lab_path)
    holders = {role: {u.username for u in lab.users if role in u.roles} for role in Role}
    assert all(holders[role] for role in Role), holders
    assert holders[Role.SAFETY] >= {"sam", "sasha"}
    assert {"olivia", "erin", "ada"} <= {u.username for u in lab.users}
    assert all(u.email and u.email.endswith("@lab.example") for u in lab.users)


def test_demo_policies_guard_doors_and_power_only_in_medium_and_high_zones(
    demo_lab_path: Path,
) -> None:
    lab = load_manifest(demo_lab_path)
    by_zone = {p.zone: p for p in lab.policies}
    assert set(by_zone) == {"cnc-room", "laser-room", "welding-bay"}
    cnc = by_zone["cnc-room"]
    assert set(cnc.intents) == {"door_unlock", "power_on"}
    assert cnc.required_roles == (Role.SAFETY,)
    assert not cnc.requires_dual_confirm
    assert not cnc.requires_presence
    for zone in ("laser-room", "welding-bay"):
        policy = by_zone[zone]
        assert set(policy.intents) == {"door_unlock", "power_on"}
        assert Role.SAFETY in policy.required_roles
        assert policy.requires_dual_confirm
        assert policy.requires_presence
        assert policy.pqe_checks["required"]
    assert "welding_helmet" in by_zone["welding-bay"].pqe_checks["required"]


# --- defaults and forms ------------------------------------------------------------------


def test_omitted_capabilities_take_the_kind_defaults(tmp_path: Path) -> None:
    lab = load_manifest(write(tmp_path, BASE))
    assert list(lab.device("torch").capabilities) == list(DEFAULT_INTENTS[DeviceKind.POWER])
    assert lab.device("torch").capabilities["power_on"] == INTENT_CATALOGUE["power_on"]


def test_display_name_defaults_to_first_alias_then_external_id(tmp_path: Path) -> None:
    lab = load_manifest(write(tmp_path, BASE))
    assert lab.device("shop-lights").display_name == "shop lights"
    assert lab.device("torch").display_name == "torch"
    assert lab.device("torch").integration == "simulated"


def test_capability_list_narrows_to_those_intents(tmp_path: Path) -> None:
    text = BASE.replace("    aliases: [shop lights]\n", "    capabilities: [light_on]\n")
    lab = load_manifest(write(tmp_path, text))
    assert list(lab.device("shop-lights").capabilities) == ["light_on"]


def test_capability_mapping_declares_custom_intents_with_schemas(tmp_path: Path) -> None:
    text = BASE.replace(
        "    aliases: [shop lights]\n",
        textwrap.indent(
            textwrap.dedent("""\
                capabilities:
                  light_on:
                  set_colour:
                    type: object
                    properties: {hue: {type: integer, maximum: 360}}
                """),
            "    ",
        ),
    )
    lab = load_manifest(write(tmp_path, text))
    caps = lab.device("shop-lights").capabilities
    assert caps["light_on"] == INTENT_CATALOGUE["light_on"]
    assert caps["set_colour"]["properties"]["hue"]["maximum"] == 360


def test_connection_keeps_env_references_verbatim(tmp_path: Path) -> None:
    text = BASE.replace(
        "    zone: hot-room\n",
        "    zone: hot-room\n"
        "    integration: octoprint\n"
        "    connection: {url: 'http://${PRINTER_HOST}:5000', api_key: '${OCTO_KEY}'}\n",
        1,
    )
    lab = load_manifest(write(tmp_path, text))
    device = lab.device("torch", integration="octoprint")
    assert device.connection == {"url": "http://${PRINTER_HOST}:5000", "api_key": "${OCTO_KEY}"}


def test_keys_are_managed_only_when_listed(tmp_path: Path) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFbyg94/ClK5qg4nCNmrOP+PcvojmPOPTjaAq5bNu95g c"
    ada = (
        "  - username: ada\n    display_name: Ada\n    roles: [admin]\n    keys:\n"
        f"      - name: laptop\n        public_key: {key}\n"
    )
    lab = load_manifest(write(tmp_path, BASE.replace("policies:\n", ada + "policies:\n")))
    assert lab.user("sam").keys is None
    ada_keys = lab.user("ada").keys
    assert ada_keys is not None
    assert [(k.name, k.public_key) for k in ada_keys] == [("laptop", key)]


# --- high-hazard rules -------------------------------------------------------------------


def test_high_hazard_policy_gets_dual_confirm_and_presence_forced(tmp_path: Path) -> None:
    text = BASE.replace(
        "    required_roles: [safety]\n",
        "    required_roles: [safety]\n"
        "    requires_dual_confirm: false\n"
        "    requires_presence: false\n",
    )
    policy = load_manifest(write(tmp_path, text)).policy("hot-room-hazards")
    assert policy.requires_dual_confirm is True
    assert policy.requires_presence is True


def test_low_hazard_policy_keeps_single_approval(tmp_path: Path) -> None:
    text = BASE.replace("    zone: hot-room\n    intents", "    zone: shop\n    intents")
    policy = load_manifest(write(tmp_path, text)).policy("hot-room-hazards")
    assert policy.zone == "shop"
    assert policy.requires_dual_confirm is False
    assert policy.requires_presence is False


# --- errors name file, line and field ----------------------------------------------------


def test_unknown_zone_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    text = BASE.replace("    zone: shop\n", "    zone: foo\n", 1)
    error = error_for(tmp_path, text)
    assert error.file == str(tmp_path / "lab.yaml")
    assert error.line == line_of(text, "zone: foo")
    assert error.field == "devices[0].zone"
    assert error.message.startswith("unknown zone 'foo'")
    assert str(error).startswith(f"{tmp_path / 'lab.yaml'}:{error.line}: devices[0].zone: ")
    assert isinstance(error, DomainError)


def test_bad_kind_is_reported_at_its_line(tmp_path: Path) -> None:
    text = BASE.replace("kind: power", "kind: laser")
    line, message = the_problem(error_for(tmp_path, text), "devices[1].kind")
    assert line == line_of(text, "kind: laser")
    assert "'laser' is not one of printer" in message


def test_empty_roles_are_reported_at_their_line(tmp_path: Path) -> None:
    text = BASE.replace("roles: [safety]\npolicies", "roles: []\npolicies")
    line, message = the_problem(error_for(tmp_path, text), "users[0].roles")
    assert line == line_of(text, "roles: []")
    assert "at least one role" in message


def test_bad_email_is_reported_at_its_line(tmp_path: Path) -> None:
    text = BASE.replace("sam@lab.example", "sam-at-lab")
    line, message = the_problem(error_for(tmp_path, text), "users[0].email")
    assert line == line_of(text, "email: sam-at-lab")
    assert "@" in message


def test_duplicate_external_id_in_one_integration_is_reported(tmp_path: Path) -> None:
    text = BASE.replace("external_id: torch", "external_id: shop-lights")
    line, message = the_problem(error_for(tmp_path, text), "devices[1].external_id")
    assert line == line_of(text, "external_id: shop-lights", occurrence=2)
    assert "duplicate external_id 'shop-lights'" in message
    assert "devices[0]" in message


def test_same_external_id_in_two_integrations_is_allowed(tmp_path: Path) -> None:
    text = BASE.replace(
        "external_id: torch", "external_id: shop-lights\n    integration: home_assistant"
    )
    lab = load_manifest(write(tmp_path, text))
    assert {d.key for d in lab.devices} == {
        ("simulated", "shop-lights"),
        ("home_assistant", "shop-lights"),
    }


def test_bad_capability_name_is_reported_at_its_list_item(tmp_path: Path) -> None:
    text = BASE.replace(
        "    aliases: [shop lights]\n", "    capabilities:\n      - light_on\n      - light_onn\n"
    )
    line, message = the_problem(error_for(tmp_path, text), "devices[0].capabilities[1]")
    assert line == line_of(text, "- light_onn")
    assert "did you mean 'light_on'" in message


def test_custom_capability_without_schema_is_reported_at_its_key(tmp_path: Path) -> None:
    text = BASE.replace("    aliases: [shop lights]\n", "    capabilities:\n      disco_mode:\n")
    line, message = the_problem(error_for(tmp_path, text), "devices[0].capabilities.disco_mode")
    assert line == line_of(text, "disco_mode:")
    assert "payload schema" in message


def test_policy_with_empty_required_roles_is_reported(tmp_path: Path) -> None:
    text = BASE.replace("required_roles: [safety]", "required_roles: []")
    line, message = the_problem(error_for(tmp_path, text), "policies[0].required_roles")
    assert line == line_of(text, "required_roles: []")
    assert "cannot be empty" in message


def test_policy_with_misspelt_intent_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("intents: [power_on]", "intents: [power_onn]")
    line, message = the_problem(error_for(tmp_path, text), "policies[0].intents[0]")
    assert line == line_of(text, "intents: [power_onn]")
    assert "did you mean 'power_on'" in message


def test_policy_without_intents_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("    intents: [power_on]\n", "")
    line, message = the_problem(error_for(tmp_path, text), "policies[0].intents")
    assert line == line_of(text, "- name: hot-room-hazards")
    assert "at least one" in message


def test_two_policies_over_one_intent_in_a_zone_are_refused(tmp_path: Path) -> None:
    text = BASE + (
        "  - name: second\n    zone: hot-room\n    intents: [power_on]\n"
        "    required_roles: [admin]\n"
    )
    line, message = the_problem(error_for(tmp_path, text), "policies[1].intents[0]")
    assert line == line_of(text, "intents: [power_on]", occurrence=2)
    assert "already governed by 'hot-room-hazards'" in message


def test_misspelt_field_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    text = BASE.replace(
        "    required_roles: [safety]\n",
        "    required_roles: [safety]\n    requires_presense: true\n",
    )
    line, message = the_problem(error_for(tmp_path, text), "policies[0].requires_presense")
    assert line == line_of(text, "requires_presense")
    assert "did you mean 'requires_presence'" in message


def test_literal_secret_in_connection_is_refused(tmp_path: Path) -> None:
    text = BASE.replace(
        "    zone: hot-room\n", "    zone: hot-room\n    connection: {password: hunter2}\n", 1
    )
    line, message = the_problem(error_for(tmp_path, text), "devices[1].connection.password")
    assert line == line_of(text, "hunter2")
    assert "${ENV_VAR}" in message


def test_malformed_env_reference_is_refused(tmp_path: Path) -> None:
    text = BASE.replace(
        "    zone: hot-room\n", "    zone: hot-room\n    connection: {url: 'http://${HOST'}\n", 1
    )
    _, message = the_problem(error_for(tmp_path, text), "devices[1].connection.url")
    assert "closing '}'" in message


def test_pasted_private_key_is_refused(tmp_path: Path) -> None:
    text = BASE.replace(
        "    roles: [safety]\n",
        "    roles: [safety]\n    keys:\n      - name: oops\n"
        "        public_key: '-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaA'\n",
    )
    _, message = the_problem(error_for(tmp_path, text), "users[0].keys[0].public_key")
    assert "private key" in message


def test_missing_required_field_points_at_its_entry(tmp_path: Path) -> None:
    text = BASE.replace("    hazard_level: low\n", "")
    line, message = the_problem(error_for(tmp_path, text), "zones[0].hazard_level")
    assert line == line_of(text, "- name: shop")
    assert message == "is required"


def test_all_problems_are_reported_in_line_order(tmp_path: Path) -> None:
    text = (
        BASE.replace("kind: power", "kind: laser")
        .replace("sam@lab.example", "nope")
        .replace("required_roles: [safety]", "required_roles: []")
    )
    error = error_for(tmp_path, text)
    assert [p.field for p in error.problems] == [
        "devices[1].kind",
        "users[0].email",
        "policies[0].required_roles",
    ]
    assert len(str(error).splitlines()) == 3
    assert error.field == "devices[1].kind"


def test_duplicate_yaml_key_is_reported(tmp_path: Path) -> None:
    text = BASE.replace("    zone: hot-room\n", "    zone: hot-room\n    zone: shop\n", 1)
    line, message = the_problem(error_for(tmp_path, text), "devices[1].zone")
    assert line == line_of(text, "zone: shop", occurrence=2)
    assert "given twice" in message


def test_yaml_syntax_error_carries_its_line(tmp_path: Path) -> None:
    text = BASE.replace("aliases: [shop lights]", "aliases: [shop lights")
    error = error_for(tmp_path, text)
    assert error.field == ""
    assert error.line is not None
    assert error.line >= line_of(text, "aliases: [shop lights")
    assert "not valid YAML" in error.message


def test_empty_manifest_is_refused(tmp_path: Path) -> None:
    error = error_for(tmp_path, "# nothing here\n")
    assert error.message == "the manifest is empty"


def test_unreadable_file_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(tmp_path / "missing.yaml")
    assert caught.value.file == str(tmp_path / "missing.yaml")
    assert "cannot read" in caught.value.message


def test_parse_manifest_names_its_source() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(BASE.replace("kind: power", "kind: laser"), "inline.yaml")
    assert str(caught.value).startswith(f"inline.yaml:{line_of(BASE, 'kind: power')}: ")


@pytest.mark.parametrize(
    "text",
    ["na\u0005me: x", "[" * 5000 + "]" * 5000, "zones: " + "{a: " * 3000 + "1" + "}" * 3000],
)
def test_hostile_yaml_is_a_manifest_error_not_a_crash(text: str) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(text, "hostile.yaml")


@pytest.mark.parametrize("text", ["version: " + "9" * 5000, "zones:\n  - name: 2026-13-45\n"])
def test_unreadable_scalars_are_a_manifest_error(text: str) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(text, "odd.yaml")


def test_literal_credentials_under_short_names_or_in_urls_are_refused() -> None:
    from kittylab.manifest.fields import connection_problems

    problems = dict(
        connection_problems(
            {
                "url": "http://admin:hunter2@octo.local",
                "key": "LITERALKEY123",
                "auth": "LITERALAUTH",
                "safe_url": "http://admin:${OCTO_PASSWORD}@octo.local",
                "host": "octo.local",
            },
            "devices[0].connection",
        )
    )
    assert set(problems) == {
        "devices[0].connection.url",
        "devices[0].connection.key",
        "devices[0].connection.auth",
    }


# --- merge keys --------------------------------------------------------------------------


def merge_key_bomb(depth: int) -> str:
    """A "billion laughs" hidden behind a ``<<`` merge key: the list at the last level
    holds 2**(depth+1) items once its aliases are expanded, in a few hundred bytes."""
    levels = ["l0: &l0 [x, x]"]
    levels += [f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}]" for i in range(1, depth + 1)]
    merged = f"    attributes:\n      <<: {{{', '.join(levels)}}}\n"
    return BASE.replace("    zone: hot-room\n", "    zone: hot-room\n" + merged, 1)


def test_merge_key_bomb_is_refused_quickly_naming_the_problem() -> None:
    text = merge_key_bomb(20)
    assert len(text) - len(BASE) < 700

    started = time.perf_counter()
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, "bomb.yaml")
    elapsed = time.perf_counter() - started

    assert elapsed < 0.5, f"took {elapsed:.2f} s"
    assert "expands to more than" in caught.value.message
    assert "merge" in caught.value.message
    assert caught.value.line is not None


def test_a_merge_key_inside_its_own_anchor_is_refused() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest("zones:\n  - &z {name: shop, <<: *z}\n", "loop.yaml")
    assert "its own anchor" in caught.value.message


def test_merge_keys_still_share_fields_between_entries() -> None:
    text = BASE.replace(
        "  - external_id: shop-lights\n    kind: light\n",
        "  - &light\n    external_id: shop-lights\n    kind: light\n",
    ).replace(
        "  - external_id: torch\n",
        "  - <<: *light\n    external_id: shop-lights-2\n    aliases: [bench lights]\n"
        "  - external_id: torch\n",
    )

    manifest = parse_manifest(text, "merge.yaml")

    copied = next(d for d in manifest.devices if d.external_id == "shop-lights-2")
    assert (copied.kind, copied.zone) == (DeviceKind.LIGHT, "shop")
    assert copied.aliases == ("bench lights",)
