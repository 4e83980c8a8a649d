import pytest

from kittylab.conversation.understanding.normalize import normalize
from kittylab.conversation.understanding.pipeline import part_request


@pytest.mark.parametrize(
    ("text", "prompt"),
    [
        ("make a 30 mm washer with an M5 hole", "a 30 mm washer with an m5 hole"),
        (
            "could you make me a 60 by 60 mounting plate 4 mm thick",
            "a 60 by 60 mounting plate 4 mm thick",
        ),
        ("build a spacer 10 mm long for M3", "a spacer 10 mm long for m3"),
        ("create a tube 0 mm long", "a tube 0 mm long"),  # impossible: the CAD service says why
    ],
)
def test_a_request_to_make_a_known_part_is_a_cad_request(text: str, prompt: str) -> None:
    understanding = part_request(normalize(text))
    assert understanding is not None
    assert understanding.intent == "cad_generate"
    assert understanding.args == {"prompt": prompt}


@pytest.mark.parametrize(
    "text", ["make the lights brighter", "make it 50 percent", "make a coffee", "what is a washer"]
)
def test_other_makes_are_not_cad_requests(text: str) -> None:
    assert part_request(normalize(text)) is None
