from itertools import pairwise

from kittylab.domain.clock import uuid7


def test_uuid7_ids_made_in_the_same_millisecond_still_increase() -> None:
    # Thousands of ids fall into each millisecond here: order must come from the counter.
    ids = [uuid7() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {7}
    # The case this guards: neighbours made within one millisecond, ordered by the counter.
    assert any(a.int >> 80 == b.int >> 80 for a, b in pairwise(ids))
