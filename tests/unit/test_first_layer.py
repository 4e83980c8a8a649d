import pytest

from kittylab.domain.first_layer import first_layer_done


@pytest.mark.parametrize(
    ("state", "done"),
    [
        ({"state": "printing", "progress": 0.05}, True),
        ({"state": "printing", "progress": 0.3}, True),
        ({"state": "printing", "progress": 0.049}, False),
        ({"state": "heating", "progress": 0.5}, False),  # a resumed job reheating
        ({"state": "paused", "progress": 0.5}, False),
        ({"state": "printing"}, False),  # no progress reported: no claim
        ({"state": "printing", "progress": True}, False),
        ({"state": "printing", "progress": "0.9"}, False),
    ],
)
def test_the_first_layer_is_laid_once_a_printing_job_passes_the_threshold(
    state: dict[str, object], done: bool
) -> None:
    assert first_layer_done(state, 0.05) is done
