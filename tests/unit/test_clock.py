from kittylab.domain.clock import uuid7


def test_uuid7_ids_made_in_the_same_millisecond_still_increase() -> None:
    # Thousands of ids fall into each millisecond here: order must come from the counter.
    ids = [uuid7() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {7}
    same_ms = [i for i in ids if i.int >> 80 == ids[0].int >> 80]
    assert len(same_ms) > 1
