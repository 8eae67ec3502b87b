from peapod.client.events import SpamFilter


def test_burst_then_one_per_refill_period() -> None:
    f = SpamFilter(burst=3, refill_seconds=10.0)
    assert [f.allow("pod-a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert f.allow("pod-b", 0.0), "buckets are per object"
    assert not f.allow("pod-a", 5.0)
    assert f.allow("pod-a", 10.0)
    assert not f.allow("pod-a", 10.0)
