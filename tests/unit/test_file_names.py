"""The print file name rule (``domain.file_names``), the ``print_start`` schema that states
it, and the drivers that apply it again without a peer (MQTT devices, the simulated
printer): a name stays a name, never a path, a URL or a line of G-code. The drivers with
peers are tested against them (test_octoprint_driver, test_moonraker_driver,
test_bambu_driver)."""

from __future__ import annotations

import asyncio
import re
from uuid import uuid4

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kittylab.adapters.devices.mqtt import MqttDeviceDriver
from kittylab.devices.ports import DeviceTarget
from kittylab.domain import file_names
from kittylab.domain.devices import INTENT_CATALOGUE, build_capabilities, validate_command
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import DeviceRefused, ValidationFailed
from kittylab.domain.print_queue import needs_slicing
from kittylab.safety.command_signature import CommandSigner
from kittylab.simulator.devices import SimulatedPrinter

# What gets past a printer's host when a name is used as given: URL paths, folders,
# Klipper script lines, FTP commands, shell options, encoded separators.
HOSTILE = {
    "traversal": "../../system/commands/core/shutdown",
    "dotdot": "..",
    "dotdot-inside": "a..b.gcode",
    "slash": "jobs/part.gcode",
    "absolute": "/sdcard/benchy.gcode",
    "backslash": "..\\..\\x.gcode",
    "double-quote": 'x" FILENAME=benchy.gcode',
    "single-quote": "x'.gcode",
    "klipper-injection": (
        'x\\" FILENAME=benchy.gcode\nM104 S250\nSET_HEATER_TEMPERATURE HEATER=heater_bed TARGET=110'
    ),
    "newline": "benchy.gcode\nM104 S250",
    "trailing-newline": "benchy.gcode\n",
    "carriage-return": "benchy.gcode\rM104 S250",
    "ftp-command": "a\r\nDELE x.3mf",
    "nul": "nul\0.gcode",
    "tab": "a\tb.gcode",
    "escape": "a\x1b[2Jb.gcode",
    "delete": "a\x7f.gcode",
    "c1-control": "a\x85b.gcode",
    "bidi-override": "a\u202eedocg.exe",
    "encoded-slash": "..%2F..%2Fsystem",
    "encoded-backslash": "..%5Cx.gcode",
    "encoded-dots": "%2e%2e%2fx.gcode",
    "fullwidth-slash": "a\uff0fb.gcode",
    "leading-dash": "-rf.gcode",
    "leading-dot": ".hidden.gcode",
    "trailing-dot": "benchy.gcode.",
    "space": "my part.gcode",
    "empty": "",
    "over-long": "a" * 123 + ".gcode",
    "url": "http://evil.example/x.gcode",
}

# Names the lab itself sends: uploads, sliced job files, CAD parts, Bambu projects.
PLAIN = ["benchy.gcode", "Part_2-v3.gcode", "part.gcode", "cube.3mf", "a.b.c.gco", "x", "9.g"]


@pytest.mark.parametrize("name", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_names_have_a_problem_and_are_refused_by_both_checks(name: str) -> None:
    assert file_names.problem(name) is not None
    with pytest.raises(ValidationFailed) as caught:
        file_names.check(name, "payload.file")
    assert caught.value.field == "payload.file"
    with pytest.raises(DeviceRefused, match=r"^voron: print file name refused"):
        file_names.refuse_unless_plain(name, "voron")


@pytest.mark.parametrize("name", PLAIN)
def test_plain_names_pass_unchanged(name: str) -> None:
    assert file_names.problem(name) is None
    assert file_names.check(name) == name
    assert file_names.refuse_unless_plain(name, "voron") == name


@pytest.mark.parametrize("name", [None, 5, b"benchy.gcode", ["benchy.gcode"]])
def test_a_name_that_is_not_a_string_is_refused(name: object) -> None:
    assert file_names.problem(name) == "must be a string"


def test_reasons_say_what_is_wrong() -> None:
    assert "path" in (file_names.problem("a/b") or "")
    assert "control" in (file_names.problem("a\nb") or "")
    assert "'%'" in (file_names.problem("a%2Fb") or "")
    assert "quotes" in (file_names.problem('a"b') or "")
    assert "'..'" in (file_names.problem("a..b") or "")
    assert "start with" in (file_names.problem("-a") or "")
    assert "128" in (file_names.problem("a" * 129) or "")


def test_every_name_the_upload_route_takes_stays_plain_once_sliced() -> None:
    # The fabrication service prints an upload as is or as "<stem>.gcode" when sliced.
    upload = file_names.name_regex(max_length=120)
    for extension in ("stl", "step", "stp", "3mf", "obj", "gcode", "gco", "g"):
        name = "p." * 40 + "a" * (39 - len(extension)) + "." + extension
        assert len(name) == 120
        assert upload.fullmatch(name), name
        slicing = needs_slicing(name)
        assert slicing is not None
        job_file = name.rsplit(".", 1)[0] + ".gcode" if slicing else name
        assert file_names.problem(job_file) is None, job_file
    assert upload.fullmatch("a" * 121) is None
    assert upload.fullmatch("benchy.gcode\n") is None
    assert not any(upload.fullmatch(name) for name in HOSTILE.values())


def test_the_schema_pattern_states_the_same_rule_as_the_check() -> None:
    schema = INTENT_CATALOGUE["print_start"]["properties"]["file"]
    assert schema["pattern"] == file_names.PATTERN
    assert schema["maxLength"] == file_names.MAX_LENGTH
    pattern = re.compile(file_names.PATTERN)
    for name in PLAIN:
        assert pattern.search(name)
    for key, name in HOSTILE.items():
        if key not in ("trailing-newline", "over-long"):
            assert pattern.search(name) is None, key


def test_a_trailing_newline_the_schema_pattern_lets_through_is_still_refused() -> None:
    # JSON Schema's pattern is a search, and Python's "$" matches before a final "\n".
    assert re.search(file_names.PATTERN, "benchy.gcode\n")
    capabilities = build_capabilities(DeviceKind.PRINTER, None)
    with pytest.raises(ValidationFailed) as caught:
        validate_command(capabilities, "print_start", {"file": "benchy.gcode\n"})
    assert caught.value.field == "payload.file"


@pytest.mark.parametrize("name", HOSTILE.values(), ids=HOSTILE.keys())
def test_print_start_payload_with_a_hostile_name_fails_validation_naming_payload_file(
    name: str,
) -> None:
    capabilities = build_capabilities(DeviceKind.PRINTER, None)
    with pytest.raises(ValidationFailed) as caught:
        validate_command(capabilities, "print_start", {"file": name})
    assert caught.value.field == "payload.file"


@pytest.mark.parametrize(
    "stored",
    [
        # What devices recorded before the rule carry, and a manifest's own schema.
        {"type": "object", "properties": {"file": {"type": "string", "maxLength": 512}}},
        {"type": "object"},
    ],
    ids=["old-catalogue-schema", "custom-schema"],
)
def test_the_rule_holds_whatever_print_start_schema_a_device_stored(
    stored: dict[str, object],
) -> None:
    with pytest.raises(ValidationFailed, match=r"payload\.file"):
        validate_command({"print_start": stored}, "print_start", {"file": "../../x"})
    validate_command({"print_start": stored}, "print_start", {"file": "benchy.gcode"})


def test_name_regex_refuses_a_limit_past_the_rule() -> None:
    with pytest.raises(ValueError, match="max_length"):
        file_names.name_regex(max_length=file_names.MAX_LENGTH + 1)


# -- the drivers' second look, where it needs no peer ------------------------------------


class _RecordingBus:
    """The MQTT bus seam: notes what would be published."""

    def __init__(self) -> None:
        self.published: list[str] = []

    def subscribe(self, topic_filter: str, handler: object) -> None:
        pass

    async def publish_now(self, topic: str, payload: object, **_: object) -> None:
        self.published.append(topic)


@pytest.mark.parametrize("name", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_mqtt_driver_publishes_no_print_start_for_a_hostile_name(name: str) -> None:
    bus = _RecordingBus()
    driver = MqttDeviceDriver(bus, CommandSigner(Ed25519PrivateKey.generate()))  # type: ignore[arg-type]
    with pytest.raises(DeviceRefused, match="print file name refused"):
        asyncio.run(driver.send(_target("mk4"), "print_start", {"file": name}))
    assert bus.published == []
    asyncio.run(driver.send(_target("mk4"), "print_start", {"file": "benchy.gcode"}))
    assert bus.published == ["kitty/devices/mk4/cmd"]


@pytest.mark.parametrize("name", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_simulated_printer_refuses_a_hostile_name_and_stays_idle(name: str) -> None:
    printer = SimulatedPrinter("demo-mk4")
    with pytest.raises(DeviceRefused, match="print file name refused"):
        printer.handle("print_start", {"file": name})
    assert printer.snapshot()["state"] == "idle"
    assert printer.snapshot()["file"] is None


def _target(external_id: str) -> DeviceTarget:
    return DeviceTarget(uuid4(), external_id, DeviceKind.PRINTER, "mqtt")
