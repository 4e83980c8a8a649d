"""The sentence templates of the grammar stage, in Home Assistant's intent template
language (hassil): ``[optional]``, ``(a|b)`` alternatives, ``{slot}`` lists and ``<rule>``
expansion rules. Device and zone lists are generated from the lab (``grammar.py``); the
rules ``<light>``, ``<printer>`` … name a device of that kind in every way people do: by
name, by kind and zone ("the lights in the cnc room", "the lights there") or by pronoun.
"""

from __future__ import annotations

from typing import Any

# Kind words: "the lights", "the printer". Values map to the kind itself.
KIND_WORDS: dict[str, tuple[str, ...]] = {
    "light": ("lights", "light", "lamps", "lamp", "lighting"),
    "printer": ("printer", "printers", "3d printer"),
    "door": ("door", "doors"),
    "power": ("power", "machine"),
    "camera": ("camera", "cam", "webcam", "cameras"),
    "sensor": ("sensor", "sensors"),
}

SKIP_WORDS = [
    "please", "pls", "plz", "kindly", "could you", "can you", "would you", "will you",
    "could u", "can u", "hey", "ok", "okay", "kitty", "hey kitty", "now", "right now",
    "for me", "thanks", "thank you", "quickly", "i want you to", "i need you to",
    "go ahead and", "just", "again", "um", "uh", "er", "erm", "hmm", "so", "well", "oh",
]  # fmt: skip

EXPANSION_RULES: dict[str, str] = {
    "the": "[the|my|our]",
    "it": "(it|that|this|that one|this one|them|those|these)",
    "in_zone": "(in|at|of|on|for) <the> {zone}",
    "turn": "(turn|switch|put|flip|set)",
    "pct": "[percent|%|per cent]",
    "deg": "[degrees|degree|celsius]",
    "print_job": "[the] (print|printing|print job|job)",
    "pic": "(snapshot|picture|photo|image|pic|shot|still|snap)",
    # Stopping a whole zone or the lab, never one device: "everything", "all machines".
    # Their words are matched exactly, never a typo's correction (``STOP_RULES``).
    "everything": "(everything|it all|all of it|all [the] (machines|equipment|devices|tools))",
    "stop_all": "(stop|halt|shut down|power down|kill|turn off|switch off) <everything>",
    "estop": "(emergency stop|e stop|estop|emergency shutdown|emergency shut down|panic stop)",
    "whole_lab": "<the> (whole|entire) (lab|workshop|shop|place|building) | <the> lab",
}

# A device of each kind: by name, by kind word (optionally with a zone or "there"), by
# "the <zone> <kind>" or by pronoun.
for _kind in KIND_WORDS:
    EXPANSION_RULES[_kind] = (
        f"(<the> {{{_kind}}} [{{{_kind}_kind}}]|<the> {{{_kind}_kind}} [<in_zone>]"
        f"|<the> {{{_kind}_kind}} {{zone}}|<the> {{zone}} {{{_kind}_kind}}|<it>)"
    )

STOP_RULES = ("everything", "stop_all", "estop", "whole_lab")
"""The expansion rules only the ``stop`` sentences use."""

INTENT_SENTENCES: dict[str, list[str]] = {
    "light_on": [
        "<turn> on <light>",
        "<turn> <light> on",
        "<light> on",
        "(light up|illuminate|brighten up) <light>",
        "(lights|light) on <in_zone>",
        "i need [some] light <in_zone>",
    ],
    "light_off": [
        "<turn> (off|of) <light>",
        "<turn> <light> off",
        "(shut|kill) [off] <light>",
        "<light> off",
        "(lights|light) off <in_zone>",
    ],
    "light_set_brightness": [
        "(dim|set|bring|turn|put|adjust|change|brighten|lower|raise) <light> [down|up] (to|at) {brightness} <pct>",
        "(dim|brighten) <light> {brightness} <pct>",
        "<light> (to|at) {brightness} <pct>",
        "set [the] brightness (of|on|for) <light> to {brightness} <pct>",
        "set <light> brightness to {brightness} <pct>",
        "{brightness} <pct> (on|for) <light>",
        "(dim|set) <light> to {brightness} <pct> brightness",
    ],
    "power_on": [
        "<turn> on <power>",
        "<turn> <power> on",
        "power (on|up) <power>",
        "power <power> (on|up)",
        "(energize|energise|enable|start|start up|fire up) <power>",
    ],
    "power_off": [
        "<turn> (off|of) <power>",
        "<turn> <power> off",
        "power (off|down) <power>",
        "power <power> (off|down)",
        "(shut down|shut off|cut|kill|disable|de energize|de energise) <power>",
        "shut <power> (down|off)",
        "cut [the] power (to|of|for) <power>",
    ],
    "door_lock": [
        "lock <door>",
        "lock up <door>",
        "(secure|close and lock) <door>",
        "<door> lock",
    ],
    "door_unlock": [
        "(unlock|open) <door>",
        "let me (in|into|through) <door>",
        "<door> (unlock|open)",
    ],
    "camera_snapshot": [
        "(take|grab|get|snap|capture|send me) [a|an] <pic> (of|from|with|on) <camera>",
        "<pic> [of|from] <camera>",
        "(show me|show) <camera>",
        "what (does|do) <camera> see",
        "(take|grab|snap) <camera> <pic>",
        "(take|grab|get|capture) [a|an] <pic> <in_zone>",
        "(take|grab|get|capture) [a|an] <pic> {zone}",
        "<camera> <pic>",
    ],
    "print_start": [
        "print {file} (on|with|using) <printer>",
        "(start|begin) printing {file} (on|with) <printer>",
        "(start|send|queue) [a] [print] [job] [of|for] {file} (on|to) <printer>",
        "(start|begin) [the|a] print [job] of {file} on <printer>",
        "<printer> print {file}",
    ],
    "print_pause": [
        "pause <printer>",
        "pause <print_job> (on|of) <printer>",
        "(hold|suspend) <printer>",
        "pause <print_job>",
        "put <printer> on hold",
    ],
    "print_resume": [
        "(resume|continue|unpause|un pause) <printer>",
        "(resume|continue|unpause) <print_job> (on|of) <printer>",
        "(resume|continue|unpause) <print_job>",
        "(carry on|keep going) [with] <printer>",
    ],
    "print_cancel": [
        "(cancel|abort|stop|kill|end) <printer>",
        "(cancel|abort|stop|kill|end) <print_job> (on|of) <printer>",
        "(cancel|abort|stop|kill) <print_job>",
    ],
    "printer_status": [
        "(status|state|progress) (of|on|for) <printer>",
        "(what is|whats) the (status|state|progress) (of|on|for) <printer>",
        "<printer> (status|progress)",
        "(how is|hows) <printer> [doing|going|getting on]",
        "how far along is <printer>",
        "what is <printer> (doing|up to|printing)",
        "whats <printer> (doing|up to|printing)",
        "is <printer> (printing|busy|idle|done|finished|ready|free|running|working)",
        "(check|check on) <printer>",
        "how long (is left|left) (on|for) <printer>",
        "(how is|hows) <print_job> (on|of) <printer> [doing|going]",
        "(is|has) <printer> finished",
    ],
    "printer_heat": [
        "(heat|preheat|pre heat|warm up|warm) <printer> [nozzle|hotend|hot end|extruder] to {nozzle} <deg>",
        "(heat|preheat|pre heat|warm up|set) <printer> [s] (nozzle|hotend|hot end|extruder) [temperature|temp] to {nozzle} <deg>",
        "(heat|preheat|pre heat|warm up|set) <printer> [s] bed [temperature|temp] to {bed} <deg>",
        "(heat|preheat|pre heat|warm up|set) <printer> [s] (nozzle|hotend|hot end|extruder) [temperature|temp] to {nozzle} <deg> and [the] bed [temperature|temp] to {bed} <deg>",
        "(heat|preheat|pre heat|warm up|set) <printer> to {nozzle} <deg> and [the] bed to {bed} <deg>",
        "(heat|preheat|pre heat|warm up|set) [the] (nozzle|hotend|hot end|extruder) (on|of) <printer> to {nozzle} <deg>",
        "(heat|preheat|pre heat|warm up|set) [the] bed (on|of) <printer> to {bed} <deg>",
        "(preheat|pre heat|heat up|heat|warm up) <printer> for {material}",
        "[set] [the] (nozzle|hotend|hot end|extruder) [temperature|temp] to {nozzle} <deg> (on|for) <printer>",
        "[set] [the] bed [temperature|temp] to {bed} <deg> (on|for) <printer>",
    ],
    "printer_cooldown": [
        "cool down <printer>",
        "cool <printer> down",
        "cool <printer>",
        "let <printer> cool [down|off]",
        "<turn> off [the] (heaters|heater|heat|heating|hotend|nozzle heater) (on|of) <printer>",
        "(stop heating|cooldown) <printer>",
    ],
    "sensor_read": [
        "read <sensor>",
        "<sensor> (reading|readings|value|values|status)",
        "what (does|do) <sensor> (say|read|show)",
        "(check|check on|get) <sensor> [reading|readings]",
        "what is the {measure} <in_zone>",
        "whats the {measure} <in_zone>",
        "how (hot|warm|cold|humid|dusty|smoky) is it <in_zone>",
        "(what is|whats) the {measure} (reading|level) [<in_zone>]",
        "(what is|whats) the {measure} (on|from) <sensor>",
        "{measure} <in_zone>",
    ],
    # A zone's or the whole lab's stop (``types.STOP``). "stop the prusa" stays the
    # printer's own cancel: these sentences name no device.
    "stop": [
        "<stop_all> <in_zone>",
        "<stop_all> [in] <whole_lab>",
        "shut <everything> (down|off) [<in_zone>]",
        "<estop> [(in|at|of|on|for)] <the> {zone}",
        "<estop> [(in|at|of|on|for)] <whole_lab>",
        "<estop> [everything] [<in_zone>]",
        "(stop|halt|shut down|power down) <whole_lab>",
        "<stop_all>",
    ],
    "cad_generate": [
        "(design|model|cad) [me] [a|an] {prompt}",
        "(generate|create|make|draw|build) [me] [a|an] (cad|3d|three d) (model|design|part|file) (of|for) [a|an] {prompt}",
        "(generate|create|make) [me] [a|an] (cad|3d) {prompt}",
        "i need [a|an] (cad|3d) (model|design) (of|for) [a|an] {prompt}",
    ],
    "_help": [
        "(hi|hello|hey there|good morning|good afternoon|good evening|yo|howdy)",
        "what can you do",
        "(help|help me|what do you know|what are you|who are you)",
        "what (devices|equipment|machines) (are there|do you know|do we have|can you control)",
        "list [the|all] (devices|equipment|machines)",
        "(thanks|thank you|cheers|great|cool|nice|perfect|awesome)",
    ],
    "_repeat": [
        "[and] <light> too",
        "[and] <light> as well",
        "[and] [also] <light> (too|as well)",
        "[and] [the] same (for|with) <light>",
        "[and] [the] same (for|with) <printer>",
        "[and] <printer> (too|as well)",
        "[and] [the] same (for|with) <camera>",
        "[and] <camera> (too|as well)",
    ],
}


MATERIALS: dict[str, dict[str, int]] = {
    "pla": {"nozzle": 215, "bed": 60},
    "petg": {"nozzle": 240, "bed": 80},
    "abs": {"nozzle": 250, "bed": 100},
    "asa": {"nozzle": 255, "bed": 100},
    "tpu": {"nozzle": 225, "bed": 50},
}

MEASURES: dict[str, str] = {
    "temperature": "temperature",
    "temp": "temperature",
    "humidity": "humidity",
    "air quality": "air_quality",
    "fumes": "air_quality",
    "fume level": "air_quality",
    "dust": "air_quality",
}


def fixed_lists() -> dict[str, Any]:
    """The slot lists that do not depend on the lab."""
    return {
        # Wider than the valid ranges on purpose: "heat the bed to 400" should be read,
        # then refused by the capability's schema with a clear reason, not misunderstood.
        "brightness": {"range": {"from": 0, "to": 1000}},
        "nozzle": {"range": {"from": 0, "to": 1000}},
        "bed": {"range": {"from": 0, "to": 1000}},
        "material": {"values": [{"in": name, "out": name} for name in MATERIALS]},
        "measure": {"values": [{"in": k, "out": v} for k, v in MEASURES.items()]},
        "file": {"wildcard": True},
        "prompt": {"wildcard": True},
    }
