"""Text → part specification: the grammar that reads a designer's prompt.

"a 60 by 60 mounting plate, 4 mm thick, four M4 holes in the corners" becomes a
``PartSpec`` for the ``mounting_plate`` family with length 60, width 60, thickness 4 and four
4.5 mm clearance holes. Units are mm (default), cm, m and inches (``in``, ``inch``, ``"``,
fractions like ``1/4 in``); lists use ``by`` or ``x``; diameters read ``diameter``,
``dia``, ``ø``, ``OD``/``ID``, ``bore`` and ``radius``; ``M3``/``M4`` name ISO 273
clearance holes. Parameters the prompt leaves out come from the family's defaults and are
listed on the spec.

It reads the words people use at a bench (issue 15, checked by a held-out corpus written
apart from the grammar): one size for several features ("2 inch legs", "70 mm on a side",
"out of 3 mm plate", "3 mm stock"), "N mm square" (a bar's cross-section, a plate's or a
box's footprint), mixed numbers ("1 1/2 in"), outer and inner radii, "40T" and "m0.8" on a
gear, hole spacings given first ("holes spaced 130 by 60"), and a stand's angle given as a
lean from vertical ("leaning back 15 degrees"). A phrase that reads two ways is read the
way that builds (the library's own convention when both do), and the other reading is
put on the spec's ``readings`` — offered with the follow-up words that ask for it.

The prompt is data: it is matched against fixed patterns and never evaluated. Prompts that
look like code or instructions to a model, huge prompts, impossible sizes and
contradictions are refused with ``ValidationFailed`` naming ``prompt`` or ``spec.<param>``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from kittylab.domain.cad_spec import (
    CLEARANCE_HOLES_MM,
    FAMILY_PARAMETERS,
    Family,
    PartSpec,
    Reading,
    build_spec,
)
from kittylab.domain.errors import ValidationFailed

MAX_PROMPT_CHARS = 2000

# Code, shell and model-instruction shapes. Words that are also plain English ("open",
# "system", "class") count only in a shape prose does not take: a call with a quoted
# argument, a class statement with its colon — "an open (lidless) box" is a box.
_INJECTION = re.compile(
    r"""(
        \bimport\s+\w | \bfrom\s+\w+\s+import\b | __\w+__ |
        \b(?:exec|eval|compile|getattr|setattr|delattr|globals|locals|popen|subprocess|
        os\.\w+|sys\.\w+)\s*\( |
        \b(?:open|system)\s*\(\s*[rbfu]?['"] | \bos\.system\b | \bsubprocess\b |
        \blambda\s*\w*\s*: | \bdef\s+\w+\s*\( |
        \bclass\s+[a-z_]\w*\s*(?:\([^()]*\))?\s*: |
        ```|<\s*script\b | \$\( | \brm\s+-rf\b | ;\s*(?:drop|delete|insert|update)\s |
        \bignore\s+(?:all\s+)?(?:previous|prior|above)\s+instructions\b |
        \bsystem\s+prompt\b | \bcq\.\w+ | \bcadquery\.\w+ | \bworkplane\s*\(
    )""",
    re.IGNORECASE | re.VERBOSE,
)

_NUMBER_WORDS = {
    "a single": "1",
    "single": "1",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "eight": "8",
    "ten": "10",
    "twelve": "12",
    "twenty": "20",
    "a pair of": "2",
    "pair of": "2",
}

# Family nouns in the order they are tried; the earliest mention in the prompt wins.
_FAMILY_WORDS: tuple[tuple[str, Family], ...] = (
    (r"spur\s+gears?|gears?|cog\s*wheels?|cogs?|gear\s*wheels?", Family.SPUR_GEAR),
    (
        r"phone\s+(?:stands?|holders?|docks?)|tablet\s+stands?|"
        r"(?:stands?|holders?|docks?)\s+for\s+(?:my\s+|a\s+|the\s+|your\s+)?(?:phones?|tablets?)",
        Family.PHONE_STAND,
    ),
    (r"(?:wall\s+|coat\s+|j\s*-?\s*)?hooks?", Family.HOOK),
    (r"enclosures?|project\s+box(?:es)?|box(?:es)?|housings?|cases?", Family.ENCLOSURE),
    (r"l\s*-?\s*brackets?|angle\s+brackets?|corner\s+brackets?|brackets?", Family.L_BRACKET),
    (r"mounting\s+plates?|mount\s+plates?|base\s*plates?", Family.MOUNTING_PLATE),
    (r"standoffs?|stand-offs?|spacers?|bushings?", Family.SPACER),
    (r"washers?|discs?|disks?|rings?", Family.WASHER),
    (r"tubes?|pipes?|sleeves?", Family.TUBE),
    (
        r"cylinders?|rods?|dowels?|pegs?|pins?|shafts?|axles?|round\s+(?:bars?|stock)",
        Family.CYLINDER,
    ),
    (
        r"plates?|blocks?|cubes?|slabs?|bars?|bricks?|cuboids?|panels?|tiles?|shims?",
        Family.BLOCK,
    ),
)
_UNSUPPORTED = re.compile(
    r"\b(spheres?|balls?|cones?|pyramids?|torus|tori|springs?|threads?|screws?|bolts?|nuts?|"
    r"vases?|figurines?|statues?|propellers?|impellers?|helix|bottles?)\b"
)
# Other families a prompt may mention without contradicting the chosen one
# ("a box with a lid plate", "a cylindrical spacer").
_COMPANIONS: Mapping[Family, frozenset[Family]] = {
    Family.ENCLOSURE: frozenset({Family.BLOCK, Family.MOUNTING_PLATE}),
    Family.MOUNTING_PLATE: frozenset({Family.BLOCK}),
    Family.BLOCK: frozenset({Family.MOUNTING_PLATE}),
    Family.L_BRACKET: frozenset({Family.BLOCK, Family.MOUNTING_PLATE}),
    Family.SPACER: frozenset({Family.CYLINDER, Family.TUBE, Family.WASHER}),
    Family.TUBE: frozenset({Family.CYLINDER, Family.SPACER}),
    Family.CYLINDER: frozenset({Family.TUBE, Family.SPACER, Family.WASHER}),
    Family.WASHER: frozenset({Family.CYLINDER, Family.SPACER}),
    Family.SPUR_GEAR: frozenset({Family.WASHER, Family.CYLINDER}),
    Family.HOOK: frozenset({Family.BLOCK, Family.MOUNTING_PLATE}),
    Family.PHONE_STAND: frozenset({Family.BLOCK, Family.MOUNTING_PLATE}),
}

_UNIT_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "in": 25.4}
_NUM = r"-?(?:\d+(?:\.\d+)?(?:/\d+)?|\.\d+)"
_UNIT = (
    r"(?:(?P<u>mm|millimet(?:er|re)s?|cm|centimet(?:er|re)s?|met(?:er|re)s?|m|"
    r"inch(?:es)?|in(?!\s+(?:the|a|an|each|every|all|its|it|diameter|dia|length|width|"
    r"height|thickness|depth|radius|size|total|from|both|either|one|two|four)\b)|\")(?![a-z0-9]))"
)
_QTY = rf"(?P<n>{_NUM})\s*{_UNIT}?"


def _qty(name: str) -> str:
    return _QTY.replace("?P<n>", f"?P<{name}>").replace("?P<u>", f"?P<{name}u>")


_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    (r"wall\s*thickness|walls?", "wall"),
    (r"outer\s+radius|outside\s+radius", "outer_radius"),
    (r"inner\s+radius|inside\s+radius", "inner_radius"),
    (r"outer\s+diameter|outside\s+diameter|o\.?d\.?", "outer_diameter"),
    (r"inner\s+diameter|inside\s+diameter|i\.?d\.?|bore|centre\s+hole|center\s+hole", "inner"),
    (r"diameter|diam\.?|dia\.?|ø|across", "diameter"),
    (r"radius", "radius"),
    (
        r"round\s+over\s+(?:the\s+|all\s+)?(?:edges|corners)|fillets?|"
        r"rounded\s+(?:corners|edges)|round\s+corners|corner\s+radius|edge\s+radius|rounds?",
        "fillet",
    ),
    (r"thickness|thick", "thickness"),
    (r"stock|material|sheet", "stock"),
    (r"height|tall|high", "height"),
    (r"length|long", "length"),
    (r"face\s+width|width|wide", "width"),
    (r"depth|deep", "depth"),
    (r"module|mod\.?", "module"),
    (r"teeth|tooth", "teeth"),
    (r"degrees?|deg|°", "angle"),
    (r"on\s+(?:a|each|every)\s+side|(?:a|per|each)\s+side", "side"),
    (r"inset|from\s+the\s+edges?|in\s+from\s+the\s+edges?", "inset"),
)

_HOLE_WORD = r"(?:clearance\s+|mounting\s+|screw\s+|through\s+|bolt\s+)?holes?"


class UnknownPart(ValidationFailed):
    """The prompt names no family of the part library; a text-to-CAD service may still
    understand it."""

    def __init__(self, message: str) -> None:
        super().__init__("prompt", message)


@dataclass
class _Reading:
    """What the prompt states, before it is mapped onto a family's parameters."""

    values: dict[str, float]
    sources: dict[str, str]
    notes: list[str]
    leftovers: list[tuple[float, str]]

    def put(self, name: str, value: float, source: str) -> None:
        previous = self.values.get(name)
        if previous is not None and not math.isclose(previous, value, abs_tol=1e-6):
            raise ValidationFailed(
                "prompt",
                f"contradictory: {name.replace('_', ' ')} is both {_fmt(previous)} "
                f"('{self.sources[name]}') and {_fmt(value)} ('{source}')",
            )
        self.values[name] = value
        self.sources[name] = source


def _fmt(value: float) -> str:
    return f"{value:g} mm"


def check_prompt_text(prompt: str) -> str:
    """The prompt, stripped; ``ValidationFailed`` (field ``prompt``) when it is empty,
    over ``MAX_PROMPT_CHARS``, or looks like code or instructions rather than a part."""
    text = prompt.strip()
    if not text:
        raise ValidationFailed("prompt", "is required")
    if len(text) > MAX_PROMPT_CHARS:
        raise ValidationFailed(
            "prompt", f"is {len(text)} characters; describe the part in {MAX_PROMPT_CHARS} or fewer"
        )
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in text):
        raise ValidationFailed("prompt", "contains control characters")
    if _INJECTION.search(text):
        raise ValidationFailed(
            "prompt",
            "looks like code or instructions, which are never run; describe the part "
            "in words and dimensions",
        )
    return text


def parse_prompt(prompt: str) -> PartSpec:
    """The part specification a prompt asks for; ``ValidationFailed`` when it cannot be
    read as one (see the module docstring)."""
    text = _normalise(check_prompt_text(prompt))
    family = _family(text)
    reading = _read(text, family)
    return _to_spec(family, reading)


def _normalise(text: str) -> str:
    text = text.lower()
    for old, new in (
        ("×", " x "),
        ("⌀", " ø "),
        ("″", '"'),
        ("”", '"'),
        ("“", '"'),
        ("’", "'"),
        ("''", '"'),
        ("–", "-"),
        ("—", "-"),
        ("millimeters", "mm"),
        ("millimetres", "mm"),
    ):
        text = text.replace(old, new)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 → 1000
    # Mixed numbers: "1 1/2 in", "2-1/2\"" → 1.5, 2.5.
    text = re.sub(r"(?<![\d./])(\d+)(?:\s+|-)(\d+)/(\d+)(?![\d/])", _mixed_number, text)
    text = re.sub(r"(?<![\w.])(\d+)t\b", r"\1 teeth", text)  # "40T"
    text = re.sub(r"(?<=\d)\s*x\s*(?=[\d.-])", " x ", text)  # 60x40 → 60 x 40
    text = re.sub(r"(?<=\d)x(?=\s)", " x", text)
    for word, digits in _NUMBER_WORDS.items():
        text = re.sub(rf"\b{word}\b", digits, text)
    return re.sub(r"\s+", " ", text)


def _mixed_number(m: re.Match[str]) -> str:
    whole, top, bottom = (int(g) for g in m.groups())
    if bottom == 0 or top >= bottom:
        return m.group(0)  # not a proper fraction: leave it for the reader to refuse or use
    return f"{whole + top / bottom:g}"


def _family(text: str) -> Family:
    found: list[tuple[int, Family, str]] = []
    masked = text
    for pattern, family in _FAMILY_WORDS:
        for match in re.finditer(rf"\b(?:{pattern})\b", masked):
            found.append((match.start(), family, match.group(0)))
            masked = masked[: match.start()] + "#" * len(match.group(0)) + masked[match.end() :]
    if not found:
        unsupported = _UNSUPPORTED.search(text)
        names = ", ".join(f.value.replace("_", " ") for f in Family)
        if unsupported:
            raise UnknownPart(
                f"the part library cannot make a {unsupported.group(1)}; it makes: {names}"
            )
        raise UnknownPart(f"names no part the library makes ({names})")
    found.sort(key=lambda item: item[0])
    _, chosen, word = found[0]
    if chosen is Family.BLOCK and word.startswith("plate") and re.search(r"\bholes?\b", text):
        chosen = Family.MOUNTING_PLATE  # a plate with holes in it is there to mount things
    for _, other, other_word in found[1:]:
        if other is not chosen and other not in _COMPANIONS[chosen]:
            raise ValidationFailed(
                "prompt", f"contradictory: asks for both a {word} and a {other_word}"
            )
    return chosen


def _to_mm(number: str, unit: str | None, default_unit: str) -> float:
    return _number(number) * _UNIT_MM[_unit_key(unit) if unit else default_unit]


def _number(number: str) -> float:
    """A decimal or a fraction (``3/8``); a zero denominator is the prompt's fault."""
    if "/" in number:
        top, bottom = number.split("/", 1)
        if float(bottom) == 0:
            raise ValidationFailed("prompt", f"'{number}' divides by zero")
        return float(top) / float(bottom)
    return float(number)


def _unit_key(unit: str) -> str:
    if unit.startswith("mm") or unit.startswith("milli"):
        return "mm"
    if unit.startswith("c"):
        return "cm"
    if unit.startswith("in") or unit == '"':
        return "in"
    return "m"


def _default_unit(text: str) -> str:
    """The unit of bare numbers: the prompt's one unit when it names only one, else mm.
    Never metres: "0.5 m long" states one length in metres, not the other sizes."""
    units = {_unit_key(m.group("u")) for m in re.finditer(_QTY, text) if m.group("u")}
    return units.pop() if len(units) == 1 and "m" not in units else "mm"


def _consume(text: str, match: re.Match[str]) -> str:
    """``text`` with the match blanked out, keeping every later position where it was."""
    size = match.end() - match.start()
    filler = " " + ";" * (size - 2) + " " if size >= 2 else ";"
    return text[: match.start()] + filler + text[match.end() :]


def _read(text: str, family: Family) -> _Reading:
    reading = _Reading(values={}, sources={}, notes=[], leftovers=[])
    unit = _default_unit(text)
    if unit != "mm":
        reading.notes.append(f"numbers without a unit read as {unit}")

    def mm(m: re.Match[str], name: str) -> float:
        return _to_mm(m.group(name), m.group(f"{name}u"), unit)

    # Lid.
    no_lid = re.search(
        r"\b(?:without\s+(?:a\s+)?lid|no\s+lid|open[\s-]top(?:ped)?|lidless)\b", text
    )
    if no_lid:
        text = _consume(text, no_lid)
        if re.search(r"\blid", text):
            raise ValidationFailed("prompt", "contradictory: asks for a lid and for no lid")
        reading.put("lid", 0.0, no_lid.group(0))
    elif has_lid := re.search(r"\blid(?:ded)?\b", text):
        reading.put("lid", 1.0, has_lid.group(0))
    text = re.sub(r"\blid(?:ded)?\b", " ", text)

    # A gear's module written "m0.8" or "m 1.5" (not a screw: nothing is screwed into a
    # gear's teeth; "M3 bore" stays a screw size).
    if family is Family.SPUR_GEAR:
        text = re.sub(
            r"\bm\s*(\d+(?:\.\d+)?)\b(?!\s*(?:x\b|screw|bolt|holes?|clearance|bore|shaft))",
            r"module \1",
            text,
        )

    # Screw sizes: M3 clearance holes, M3 x 10 standoffs.
    screw = re.compile(rf"\bm(?P<d>\d+(?:\.5)?)(?:\s*x\s*{_qty('len')})?\b")
    screws: set[float] = set()
    for m in list(screw.finditer(text)):
        name = f"M{m.group('d')}"
        if name not in CLEARANCE_HOLES_MM:
            raise ValidationFailed("prompt", f"{name} is not a metric size the library knows")
        clearance = CLEARANCE_HOLES_MM[name]
        screws.add(clearance)
        reading.notes.append(f"{name} clearance hole: {clearance:g} mm (ISO 273 medium)")
        reading.put("screw", clearance, m.group(0))
        reading.put("screw_nominal", float(m.group("d")), m.group(0))
        if m.group("len"):
            reading.put("length", mm(m, "len"), m.group(0))
    if len(screws) > 1:
        raise ValidationFailed("prompt", "contradictory: names more than one screw size")
    text = screw.sub(" screw ", text)

    # Hole counts and hole patterns.
    text = _read_holes(text, reading, unit)

    # Sizes stated by what the part is made from, and shared by features.
    text = _read_shared_sizes(text, reading, unit)
    _read_angle_reference(text, reading)

    # Lists: "60 by 40 by 5 mm", "20 x 100".
    listed = re.compile(
        rf"{_qty('a')}\s*(?:by|x|\*)\s*{_qty('b')}(?:\s*(?:by|x|\*)\s*{_qty('c')})?"
        r"(?P<tail>\s*(?:mm|cm|in|inch(?:es)?)?\s*(?:hole\s+)?(?:pattern|spacing|grid|apart|"
        r"centres|centers|on\s+cent(?:er|re)s?))?"
    )
    spaced = re.compile(
        r"(?:spaced|spacing|pattern|grid|apart|cent(?:er|re)s|on\s+cent(?:er|re)s)"
        r"(?:\s+(?:of|at|on))?\s*$"
    )
    for m in list(listed.finditer(text)):
        names = ["a", "b"] + (["c"] if m.group("c") else [])
        last_unit = m.group(f"{names[-1]}u")
        values = [_to_mm(m.group(n), m.group(f"{n}u") or last_unit, unit) for n in names]
        if m.group("tail") or spaced.search(text[: m.start()]):
            if len(values) != 2:
                raise ValidationFailed("prompt", "a hole pattern has two spacings")
            reading.put("hole_spacing_x", values[0], m.group(0))
            reading.put("hole_spacing_y", values[1], m.group(0))
        else:
            for index, value in enumerate(values):
                reading.put(f"list{len(values)}_{index}", value, m.group(0))
        text = _consume(text, m)

    # "20 mm cube".
    cube = rf"{_qty('a')}\s*cubes?\b|\bcubes?\s+(?:of\s+)?{_qty('b')}"
    for m in list(re.finditer(cube, text)):
        side = mm(m, "a") if m.group("a") else mm(m, "b")
        for name in ("length", "width", "thickness"):
            reading.put(name, side, m.group(0))
        text = _consume(text, m)

    # Attribute words pair with the quantity next to them: the one before ("4 mm thick")
    # unless another word took it, else the one after ("thickness 4").
    _pair_attributes(text, reading, unit)
    return reading


_JOINER = re.compile(r"\s*(?:-|of|is|=|:|to|at|about|of\s+about|in)?\s*")
_RAW_NUMBERS = frozenset({"teeth", "angle", "module"})
# Words that only ever follow their size ("3 mm stock", "70 mm on a side"): the number after
# them belongs to something else ("round stock 20 mm diameter").
_BEFORE_ONLY = frozenset({"stock", "side"})
_RENAMED = {"stock": "thickness"}


def _pair_attributes(text: str, reading: _Reading, unit: str) -> None:
    tokens: list[tuple[int, int, str, str | None, re.Match[str] | None]] = []
    masked = text
    for pattern, name in _ATTRIBUTES:
        for m in re.finditer(rf"(?<![a-z])(?:{pattern})(?![a-z])", masked):
            tokens.append((m.start(), m.end(), "attr", name, None))
            masked = masked[: m.start()] + "#" * (m.end() - m.start()) + masked[m.end() :]
    for m in re.finditer(_QTY, masked):
        tokens.append((m.start(), m.end(), "qty", None, m))
    tokens.sort(key=lambda token: token[0])
    used: set[int] = set()

    def adjacent(left: int, right: int) -> bool:
        between = masked[tokens[left][1] : tokens[right][0]]
        return _JOINER.fullmatch(between) is not None

    for index, (_, _, kind, attribute, _) in enumerate(tokens):
        if kind != "attr" or attribute is None:
            continue
        choice: int | None = None
        before, after = index - 1, index + 1
        if (
            before >= 0
            and tokens[before][2] == "qty"
            and before not in used
            and adjacent(before, index)
        ):
            choice = before
        elif (
            attribute not in _BEFORE_ONLY
            and after < len(tokens)
            and tokens[after][2] == "qty"
            and adjacent(index, after)
        ):
            choice = after
        if choice is None:
            continue
        used.add(choice)
        quantity = tokens[choice][4]
        assert quantity is not None
        if attribute in _RAW_NUMBERS:
            value = _number(quantity.group("n"))
        else:
            value = _to_mm(quantity.group("n"), quantity.group("u"), unit)
        start = min(tokens[index][0], quantity.start())
        end = max(tokens[index][1], quantity.end())
        reading.put(_RENAMED.get(attribute, attribute), value, text[start:end].strip())
    for index, (_, _, kind, _, leftover) in enumerate(tokens):
        if kind == "qty" and index not in used and leftover is not None:
            reading.leftovers.append(
                (_to_mm(leftover.group("n"), leftover.group("u"), unit), leftover.group(0).strip())
            )


_LEG = r"(?:(?:both|each|two|2|equal)\s+legs?|(?:the\s+)?legs)"
_LEGS = re.compile(
    rf"{_LEG}\s+(?:are\s+|of\s+|at\s+|each\s+)?{_qty('a')}"
    rf"(?:\s*(?:each|long))?|{_qty('b')}\s*(?:long\s+|equal\s+)?legs\b"
)
_WHICH_LEG = r"horizontal|bottom|base|lower|flat|vertical|upright|upper|side|top"
_ONE_LEG = re.compile(
    rf"(?P<which>{_WHICH_LEG})\s+leg\s+(?:is\s+|of\s+|at\s+)?{_qty('a')}(?:\s*long)?|"
    rf"{_qty('b')}\s*(?:long\s+)?(?P<which2>{_WHICH_LEG})\s+leg\b"
)
_MADE_FROM = re.compile(
    rf"(?:out\s+of|made\s+(?:of|from)|cut\s+from|from|in)\s+{_qty('a')}\s*(?:thick\s+)?"
    r"(?:plate|sheet|stock|material|aluminium|aluminum|steel|acrylic|plywood)\b"
)
_SQUARE = re.compile(rf"{_qty('a')}\s*square\b(?!\s+(?:holes?|pattern|grid))")
_ELONGATED = re.compile(r"\b(?:bars?|beams?|sticks?|posts?|rails?|battens?|lengths?)\b")


def _read_shared_sizes(text: str, reading: _Reading, unit: str) -> str:
    """One size given for several features: an L bracket's "2 inch legs" (both legs), a
    part "out of 3 mm plate" (its thickness), "a 20 mm square bar" (two equal sides)."""

    def mm(m: re.Match[str], name: str) -> float:
        return _to_mm(m.group(name), m.group(f"{name}u"), unit)

    for m in list(_ONE_LEG.finditer(text)):
        which = m.group("which") or m.group("which2")
        name = "a" if m.group("a") else "b"
        axis = "height" if re.match(r"vert|up|side|top", which) else "length"
        reading.put(axis, mm(m, name), m.group(0).strip())
        text = _consume(text, m)
    for m in list(_LEGS.finditer(text)):
        name = "a" if m.group("a") else "b"
        if name == "a" or m.group("bu") or _number(m.group("b")) >= 5:
            reading.put("legs", mm(m, name), m.group(0).strip())
        # else "2 legs": a count, which says nothing more about an L bracket
        text = _consume(text, m)
    for m in list(_MADE_FROM.finditer(text)):
        reading.put("thickness", mm(m, "a"), m.group(0).strip())
        text = _consume(text, m)
    for m in list(_SQUARE.finditer(text)):
        reading.put("square", mm(m, "a"), m.group(0).strip())
        text = _consume(text, m)
    if "square" in reading.values and _ELONGATED.search(text):
        reading.put("elongated", 1.0, "a bar")
    return text


_FROM_VERTICAL = re.compile(
    r"\b(?:lean(?:s|ing|ed)?|tilt(?:s|ed|ing)?|reclin(?:e|es|ed|ing)|tipped|"
    r"from\s+(?:the\s+)?vertical|off\s+(?:the\s+)?vertical|past\s+vertical|back\s+by)\b"
)
_FROM_HORIZONTAL = re.compile(
    r"\bfrom\s+(?:the\s+)?(?:horizontal|desk|table|base|flat|floor|ground)\b|"
    r"\bto\s+the\s+(?:desk|table|base|horizontal)\b"
)


def _read_angle_reference(text: str, reading: _Reading) -> None:
    """Whether an angle is measured from the vertical ("leaning back 15 degrees", "a 20°
    tilt") or from the horizontal ("70 degrees from the desk"); unsaid, ``_stand_angle``
    decides."""
    if _FROM_HORIZONTAL.search(text):
        reading.put("angle_reference", 0.0, "from the horizontal")
    elif m := _FROM_VERTICAL.search(text):
        reading.put("angle_reference", 1.0, m.group(0))


def _read_holes(text: str, reading: _Reading, unit: str) -> str:
    """Hole count, diameter and pattern; returns the text with them removed."""
    patterns = (
        # "4 M4 holes", "4 x 5 mm holes", "two 3 mm holes", "4 holes of 6.5 mm"
        rf"(?<![\d.])(?P<count>\d+)(?![\d.])\s*(?:x\s*)?(?:(?P<screw>screw)|{_qty('d')})?\s*{_HOLE_WORD}"
        rf"(?:\s+(?:of|at)\s+{_qty('e')}(?:\s*(?:diameter|dia\.?))?)?",
        # "a 5 mm hole", "an M3 hole", "screw holes"
        rf"\ban?\s+(?:(?P<screw>screw)|{_qty('d')})\s*{_HOLE_WORD}",
        rf"(?:(?P<screw>screw)|{_qty('d')})\s*{_HOLE_WORD}",
        rf"{_HOLE_WORD}\s+(?:of\s+)?(?:(?P<screw>screw)|{_qty('d')})(?:\s*diameter)?",
    )
    for index, pattern in enumerate(patterns):
        for m in list(re.finditer(pattern, text)):
            groups = m.groupdict()
            if groups.get("count") is not None:
                reading.put("hole_count", float(groups["count"]), m.group(0))
            elif index == 1:
                reading.put("hole_count", 1.0, m.group(0))
            if groups.get("d") is not None:
                reading.put("hole_diameter", _to_mm(m.group("d"), m.group("du"), unit), m.group(0))
            if groups.get("e") is not None:
                reading.put("hole_diameter", _to_mm(m.group("e"), m.group("eu"), unit), m.group(0))
            elif groups.get("screw") and "screw" in reading.values:
                reading.put("hole_diameter", reading.values["screw"], m.group(0))
            reading.put("holes", 1.0, m.group(0))
            text = _consume(text, m)
    corners = r"\b(?:in|at|on|near)\s+(?:the\s+|each\s+|all\s+)?(?:4\s+)?corners?\b"
    if re.search(corners, text) and "holes" in reading.values:
        reading.put("hole_count", 4.0, "in the corners")
    if re.search(r"\b(?:centre|center|middle)\b", text) and "holes" in reading.values:
        reading.put("hole_count", 1.0, "in the centre")
    if re.search(r"\bno\s+holes?\b|\bwithout\s+holes?\b|\bsolid\b", text):
        reading.put("hole_count", 0.0, "no holes")
    return text


def _iter_lists(reading: _Reading) -> Iterator[tuple[int, list[float], str]]:
    for size in (3, 2):
        if f"list{size}_0" in reading.values:
            values = [reading.values[f"list{size}_{i}"] for i in range(size)]
            yield size, values, reading.sources[f"list{size}_0"]


# The family's dimensions that lists and bare numbers fill, in order.
_MAIN: Mapping[Family, tuple[str, ...]] = {
    Family.BLOCK: ("length", "width", "thickness"),
    Family.MOUNTING_PLATE: ("length", "width", "thickness"),
    Family.CYLINDER: ("diameter", "length"),
    Family.SPACER: ("outer_diameter", "length"),
    Family.WASHER: ("outer_diameter", "thickness"),
    Family.TUBE: ("outer_diameter", "length"),
    Family.L_BRACKET: ("length", "width", "height"),
    Family.ENCLOSURE: ("length", "width", "height"),
    Family.HOOK: ("width", "depth", "height"),
    Family.PHONE_STAND: ("width", "depth", "height"),
    Family.SPUR_GEAR: (),
}

# Families whose height is their thickness.
_FLAT = frozenset({Family.BLOCK, Family.MOUNTING_PLATE, Family.WASHER, Family.SPUR_GEAR})

# ISO 7089 plain washers: inner diameter, outer diameter, thickness.
_WASHERS: Mapping[float, tuple[float, float, float]] = {
    2.0: (2.2, 5.0, 0.3),
    2.5: (2.7, 6.0, 0.5),
    3.0: (3.2, 7.0, 0.5),
    4.0: (4.3, 9.0, 0.8),
    5.0: (5.3, 10.0, 1.0),
    6.0: (6.4, 12.0, 1.6),
    8.0: (8.4, 16.0, 1.6),
    10.0: (10.5, 20.0, 2.0),
}


def _to_spec(family: Family, r: _Reading, base: Mapping[str, float] | None = None) -> PartSpec:
    v = dict(r.values)
    params: dict[str, float] = {}
    notes = list(r.notes)
    known = FAMILY_PARAMETERS[family]

    def put(name: str, value: float, source: str) -> None:
        if name not in known:
            raise ValidationFailed(
                "prompt", f"a {family.value.replace('_', ' ')} has no {name.replace('_', ' ')}"
            )
        previous = params.get(name)
        if previous is not None and not math.isclose(previous, value, abs_tol=1e-6):
            raise ValidationFailed(
                "prompt",
                f"contradictory: {name.replace('_', ' ')} is both {_fmt(previous)} "
                f"and {_fmt(value)} ('{source}')",
            )
        params[name] = value

    if "diameter" in v and "radius" in v and not math.isclose(v["diameter"], 2 * v["radius"]):
        raise ValidationFailed(
            "prompt",
            f"contradictory: diameter {_fmt(v['diameter'])} but radius {_fmt(v['radius'])}",
        )
    if "radius" in v:
        v.setdefault("diameter", 2 * v.pop("radius"))
        v.pop("radius", None)
    for key, target in (("outer_radius", "outer_diameter"), ("inner_radius", "inner")):
        if key in v:
            value = 2 * v.pop(key)
            if target in v and not math.isclose(v[target], value):
                raise ValidationFailed(
                    "prompt",
                    f"contradictory: {target.replace('_', ' ')} {_fmt(v[target])} but "
                    f"{key.replace('_', ' ')} {_fmt(value / 2)}",
                )
            v[target] = value
    ringed = family in (Family.SPACER, Family.WASHER, Family.TUBE)
    if family is Family.CYLINDER and ("inner" in v or "wall" in v):
        family, known = Family.TUBE, FAMILY_PARAMETERS[Family.TUBE]
        ringed = True
        notes.append("a cylinder with a bore is built as a tube")

    for key, value in v.items():
        src = r.sources.get(key, key)
        if key in ("list2_0", "list2_1", "list3_0", "list3_1", "list3_2", "holes"):
            continue
        if key in ("screw", "screw_nominal", "square", "elongated", "angle_reference"):
            continue  # read below, once the rest is known
        if key == "hole_count" and value == 0 and "hole_count" not in known and not ringed:
            continue  # "a solid cylinder": there were no holes to leave out
        match key:
            case "lid":
                put("lid", value, src)
            case "hole_count" | "hole_diameter" if ringed or family is Family.SPUR_GEAR:
                if key == "hole_diameter":
                    put("bore" if family is Family.SPUR_GEAR else "inner_diameter", value, src)
                elif value > 1:
                    raise ValidationFailed("prompt", f"a {family.value} has one central hole")
            case "hole_count" | "hole_diameter" | "hole_spacing_x" | "hole_spacing_y":
                if family is Family.HOOK and key == "hole_count":
                    if value > 1:
                        raise ValidationFailed("prompt", "a hook has one mounting hole")
                    if value == 0:
                        put("hole_diameter", 0.0, src)
                    continue
                put(key, value, src)
            case "inset":
                put("hole_inset", value, src)
            case "wall":
                if family is Family.ENCLOSURE:
                    put("wall", value, src)
                elif ringed:
                    params["_wall"] = value
                else:
                    put("wall", value, src)
            case "outer_diameter":
                put("diameter" if family is Family.CYLINDER else "outer_diameter", value, src)
            case "inner":
                put("bore" if family is Family.SPUR_GEAR else "inner_diameter", value, src)
            case "diameter":
                if ringed:
                    put("outer_diameter", value, src)
                elif family is Family.SPUR_GEAR:
                    params["_tip_diameter"] = value
                else:
                    put("diameter", value, src)
            case "thickness":
                if family is Family.ENCLOSURE:
                    put("wall", value, src)
                elif family in (Family.TUBE, Family.SPACER):
                    params["_wall"] = value
                else:
                    put("thickness", value, src)
            case "height":
                if family in _FLAT:
                    put("thickness", value, src)
                elif family in (Family.CYLINDER, Family.SPACER, Family.TUBE):
                    put("length", value, src)
                else:
                    put("height", value, src)
            case "length":
                if family is Family.HOOK:
                    put("height", value, src)
                elif family is Family.PHONE_STAND:
                    put("depth", value, src)
                else:
                    put("length", value, src)
            case "width":
                if family is Family.SPUR_GEAR:
                    put("thickness", value, src)
                else:
                    put("width", value, src)
            case "depth":
                if family in (Family.HOOK, Family.PHONE_STAND):
                    put("depth", value, src)
                elif family in (Family.ENCLOSURE, Family.BLOCK, Family.MOUNTING_PLATE):
                    # "100 wide, 60 deep": wide is then the long side.
                    if "width" in params and "length" not in params:
                        params["length"] = params.pop("width")
                    put("width", value, src)
                else:
                    put("depth", value, src)
            case "fillet":
                put("fillet", value, src)
            case "teeth":
                put("teeth", value, src)
            case "module":
                put("module", value, src)
            case "angle":
                params["_angle"] = value
            case "legs":
                if family is not Family.L_BRACKET:
                    raise ValidationFailed(
                        "prompt", f"a {family.value.replace('_', ' ')} has no legs"
                    )
                put("length", value, src)
                put("height", value, src)
            case "side":
                if "width" not in known or "length" not in known:
                    raise ValidationFailed(
                        "prompt", f"a {family.value.replace('_', ' ')} has no square sides"
                    )
                put("length", value, src)
                put("width", value, src)
            case _:  # pragma: no cover - every reading key is handled above
                raise ValidationFailed("prompt", f"cannot use '{src}'")

    if "square" in v:
        _square(family, v, r.sources["square"], params, put, r.leftovers)

    # Lists and bare numbers fill the main dimensions not yet stated.
    main = _MAIN[family]
    for _size, values, src in _iter_lists(r):
        if len(values) > len(main):
            raise ValidationFailed(
                "prompt", f"'{src}' gives {len(values)} sizes; a {family.value} takes {len(main)}"
            )
        for name, value in zip(main, values, strict=False):
            put(name, value, src)
    if family is Family.BLOCK and "list2_0" in v and "thickness" not in params:
        pass  # a plate given as "60 x 40" keeps the default thickness, reported below
    free = [name for name in main if name not in params]
    if family is Family.ENCLOSURE and "height" in free and len(r.leftovers) < len(free):
        free = [name for name in free if name != "height"] + ["height"]
    for value, src in r.leftovers:
        if not free:
            raise ValidationFailed(
                "prompt",
                f"could not tell what '{src}' measures; say thick, wide, long, tall, diameter, …",
            )
        put(free.pop(0), value, src)

    # Derived parameters.
    if "screw" in v:
        screw, nominal = v["screw"], v["screw_nominal"]
        if family in (Family.BLOCK, Family.MOUNTING_PLATE, Family.L_BRACKET, Family.HOOK):
            params.setdefault("hole_diameter", screw)
            if "holes" not in v and family is not Family.HOOK:
                raise ValidationFailed("prompt", "names a screw size but no holes")
        elif family is Family.SPACER:
            params.setdefault("inner_diameter", screw)
        elif family is Family.WASHER and nominal in _WASHERS:
            inner, outer, thick = _WASHERS[nominal]
            params.setdefault("inner_diameter", inner)
            params.setdefault("outer_diameter", outer)
            params.setdefault("thickness", thick)
            notes.append(f"M{nominal:g} washer per ISO 7089")
        elif family is Family.SPUR_GEAR:
            params.setdefault("bore", screw)
        else:
            raise ValidationFailed("prompt", f"a {family.value} takes no screw size")
    if "holes" in v and family in (Family.BLOCK, Family.L_BRACKET):
        params.setdefault("hole_count", 4.0 if family is Family.BLOCK else 1.0)
    if family is Family.MOUNTING_PLATE and v.get("hole_count") == 0:
        params["hole_count"] = 0.0
    wall = params.pop("_wall", None)
    if wall is not None:
        outer = params.get("outer_diameter", known["outer_diameter"])
        put("inner_diameter", outer - 2 * wall, f"{wall:g} mm wall")
    tip = params.pop("_tip_diameter", None)
    if tip is not None:
        if "module" in params and "teeth" not in params:
            count = round(tip / params["module"] - 2)
            params["teeth"] = float(count)
            notes.append(f"{count} teeth give the {tip:g} mm tip diameter")
        else:
            teeth = params.get("teeth", known["teeth"])
            params.setdefault("module", tip / (teeth + 2))
            notes.append(f"module {params['module']:g} gives the {tip:g} mm tip diameter")
        if not math.isclose(params["module"] * (params.get("teeth", known["teeth"]) + 2), tip):
            raise ValidationFailed(
                "prompt", f"contradictory: module and teeth do not give a {tip:g} mm gear"
            )
    angle = params.pop("_angle", None)
    readings: list[Reading] = []
    if angle is not None:
        if family is not Family.PHONE_STAND:
            raise ValidationFailed("prompt", f"a {family.value.replace('_', ' ')} has no angle")
        stated = {**base, **params} if base is not None else params
        source = r.sources.get("angle", "angle")
        reference = v.get("angle_reference")
        params["angle"] = _stand_angle(angle, reference, source, stated, notes, readings)
    if base is not None:
        return build_spec(
            family, {**base, **params}, defaults=(), notes=tuple(notes), readings=tuple(readings)
        )
    return build_spec(family, params, notes=tuple(notes), readings=tuple(readings))


def _square(
    family: Family,
    v: Mapping[str, float],
    source: str,
    params: Mapping[str, float],
    put: Callable[[str, float, str], None],
    leftovers: list[tuple[float, str]],
) -> None:
    """ "N square": two equal sides. A bar's ("a 20 mm square bar, 150 long") are its
    cross-section; a plate's or a box's its footprint."""
    side = v["square"]
    if family is Family.BLOCK:
        cross, footprint = ("width", "thickness"), ("length", "width")
        across = "elongated" in v or ("length" in params and "thickness" not in params)
        order = (cross, footprint) if across else (footprint, cross)
        names = next((n for n in order if not any(x in params for x in n)), order[0])
    elif family in (Family.MOUNTING_PLATE, Family.ENCLOSURE):
        names = ("length", "width")
    else:
        leftovers.insert(0, (side, source))
        return
    for name in names:
        put(name, side, source)


def _stand_angle(
    angle: float,
    reference: float | None,
    source: str,
    stated: Mapping[str, float],
    notes: list[str],
    readings: list[Reading],
) -> float:
    """A phone stand's back angle to its base from what the prompt says. The library
    measures from the base (horizontal); people often give the lean from vertical
    ("leaning back 15 degrees", "a 20° tilt"). Unqualified, an angle under 30° can only
    be a lean; between 30° and 60° both readings are possible: the one that builds is
    taken (from the base when both do) and the other is offered."""
    from_base, lean = angle, 90.0 - angle
    if reference == 1.0 or (reference is None and angle < 30):
        notes.append(f"'{source}' read as the lean from vertical: the back is at {lean:g}°")
        return lean
    if reference == 0.0 or not 30 <= angle <= 60 or math.isclose(angle, 45):
        return from_base
    builds = {a: _stand_builds(stated, a) for a in (from_base, lean)}
    if builds[from_base]:
        taken, other = from_base, lean
        taken_words = f"{angle:g}° between the back and the base"
        other_words = f"a {angle:g}° lean from vertical (the back at {lean:g}° to the base)"
    elif builds[lean]:
        taken, other = lean, from_base
        taken_words = f"a {angle:g}° lean from vertical (the back at {lean:g}° to the base)"
        other_words = f"{angle:g}° between the back and the base"
    else:
        return from_base  # neither builds: the spec check says why
    if builds[other]:
        readings.append(
            Reading(
                phrase=source,
                taken=taken_words,
                other=other_words,
                other_params={"angle": other},
                follow_up=f"angle {other:g} degrees from the base",
            )
        )
    else:
        readings.append(
            Reading(
                phrase=source,
                taken=taken_words,
                other=f"{other_words}: not possible, the back would reach the front lip",
            )
        )
    return taken


def _stand_builds(stated: Mapping[str, float], angle: float) -> bool:
    try:
        build_spec(Family.PHONE_STAND, {**stated, "angle": angle})
    except ValidationFailed:
        return False
    return True


_FOLLOW_UP = re.compile(
    rf"(?P<verb>make\s+it|set\s+(?:the\s+)?|change\s+(?:the\s+)?)?\s*{_QTY}\s*"
    r"(?P<dir>taller|shorter|longer|wider|narrower|thicker|thinner|deeper|shallower|"
    r"bigger|larger|smaller)"
)
_GROW = {
    "taller": ("height", 1),
    "shorter": ("height", -1),
    "longer": ("length", 1),
    "wider": ("width", 1),
    "narrower": ("width", -1),
    "thicker": ("thickness", 1),
    "thinner": ("thickness", -1),
    "deeper": ("depth", 1),
    "shallower": ("depth", -1),
}
_SCALE = {"bigger": 1, "larger": 1, "smaller": -1}
"""Comparatives about the whole part: every main size of the family changes by the amount."""

FOLLOW_UP_FIELD = "followUp"


def apply_follow_up(spec: PartSpec, follow_up: str) -> PartSpec:
    """``spec`` changed as a follow-up asks: "make it 5 mm taller", "5 mm bigger" (every
    main size), "add a 3 mm fillet", "4 mm thick", "with a lid", "M3 holes".

    ``ValidationFailed`` when it cannot be read or changes nothing the family has, naming
    ``followUp`` (the request's field; it is never the original prompt at fault), or
    ``spec.<param>`` for a change that makes an impossible part."""
    try:
        return _apply_follow_up(spec, follow_up)
    except ValidationFailed as exc:
        if exc.field != "prompt":
            raise
        raise ValidationFailed(FOLLOW_UP_FIELD, exc.message) from None


def _apply_follow_up(spec: PartSpec, follow_up: str) -> PartSpec:
    text = _normalise(check_prompt_text(follow_up))
    changes: dict[str, float] = {}
    unit = _default_unit(text)
    for m in _FOLLOW_UP.finditer(text):
        direction = m.group("dir")
        amount = _to_mm(m.group("n"), m.group("u"), unit)
        if direction in _SCALE:
            for name in _main_sizes(spec):
                _change(changes, name, spec[name] + amount * _SCALE[direction], m.group(0))
            continue
        word, sign = _GROW[direction]
        name = _axis_for(spec, word)
        _change(changes, name, spec[name] + amount * sign, m.group(0))
    text = _FOLLOW_UP.sub(" ; ", text)
    fillet = re.search(rf"{_QTY}\s*(?:fillets?|rounded|round)", text)
    if fillet:
        _change(changes, "fillet", _to_mm(fillet.group("n"), fillet.group("u"), unit), "fillet")
        text = _consume(text, fillet)
    if not changes:
        # Otherwise read it as a partial prompt for the same family.
        reading = _read(text, spec.family)
        restated = _to_partial(spec, reading)
        changes.update(restated)
    if not changes:
        raise ValidationFailed("prompt", "the follow-up changes nothing this part has")
    unknown = [name for name in changes if name not in spec.params]
    if unknown:
        raise ValidationFailed(
            "prompt",
            f"a {spec.family.value.replace('_', ' ')} has no {unknown[0].replace('_', ' ')}",
        )
    return spec.replace(**changes)


def _change(changes: dict[str, float], name: str, value: float, source: str) -> None:
    previous = changes.get(name)
    if previous is not None and not math.isclose(previous, value, abs_tol=1e-6):
        raise ValidationFailed(
            "prompt", f"contradictory: changes the {name.replace('_', ' ')} twice ('{source}')"
        )
    changes[name] = value


def _main_sizes(spec: PartSpec) -> tuple[str, ...]:
    """The sizes "bigger" and "smaller" change: the family's main dimensions."""
    if spec.family is Family.SPUR_GEAR:
        raise ValidationFailed(
            "prompt", "a gear's size follows from its teeth, module or thickness: say which"
        )
    return _MAIN[spec.family]


def _axis_for(spec: PartSpec, word: str) -> str:
    """The parameter a comparative ("taller") changes for this family."""
    p = spec.params
    aliases = {
        "height": ("height", "thickness", "length"),
        "length": ("length", "height", "depth"),
        "width": ("width", "outer_diameter", "diameter"),
        "thickness": ("thickness", "wall", "length"),
        "depth": ("depth", "width"),
    }
    if spec.family in (Family.CYLINDER, Family.SPACER, Family.TUBE) and word == "height":
        return "length"
    for name in aliases[word]:
        if name in p:
            return name
    raise ValidationFailed("prompt", f"a {spec.family.value} has no {word}")


def _to_partial(spec: PartSpec, reading: _Reading) -> dict[str, float]:
    """The parameters a follow-up restates, read as a prompt for the same family on top of
    the current ones."""
    if not reading.values and not reading.leftovers:
        return {}
    fresh = _to_spec(spec.family, reading, base=spec.params)
    return {k: val for k, val in fresh.params.items() if not math.isclose(val, spec.params[k])}
