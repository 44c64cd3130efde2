"""The embedded job store and result cache: bounded, oldest finished first, no scans."""

from __future__ import annotations

import time

from service.jobs.cache import MemoryCache
from service.jobs.store import JobRecord, JobState, MemoryJobStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(job_id: str) -> JobRecord:
    return JobRecord(job_id=job_id, kind="explain", model="m", version="v")


def _finished(store: MemoryJobStore, job_id: str, result: bytes = b"{}") -> JobRecord:
    record = _record(job_id)
    store.put(record)
    store.finish(record, JobState.succeeded, result=result)
    return record


def test_finished_records_expire_in_finishing_order_and_active_ones_never() -> None:
    clock = Clock()
    store = MemoryJobStore(ttl=10, max_finished=100, max_result_bytes=1 << 20, clock=clock)
    active = _record("active")
    store.put(active)
    _finished(store, "a")
    clock.now += 4
    _finished(store, "b")
    clock.now += 7  # a is 11 s old, b 7 s
    assert store.get("a") is None
    assert store.get("b") is not None
    clock.now += 1000
    assert store.get("b") is None
    assert store.get("active") is active
    assert store.counts() == {
        "queued": 1,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
    }


def test_the_count_bound_drops_the_oldest_finished_never_an_active_one() -> None:
    store = MemoryJobStore(ttl=3600, max_finished=3, max_result_bytes=1 << 20)
    running = [_record(f"run-{i}") for i in range(5)]
    for record in running:
        store.put(record)
        store.start(record)
    for i in range(6):
        _finished(store, f"done-{i}")
    assert [store.get(f"done-{i}") is not None for i in range(6)] == [False] * 3 + [True] * 3
    assert all(store.get(r.job_id) is r for r in running)
    assert store.counts()["running"] == 5
    assert store.counts()["succeeded"] == 3
    assert len(store) == 8


def test_the_byte_bound_drops_the_oldest_results_and_keeps_the_newest() -> None:
    store = MemoryJobStore(ttl=3600, max_finished=1000, max_result_bytes=250)
    for i in range(5):
        _finished(store, f"r{i}", b"x" * 100)
    assert [store.get(f"r{i}") is not None for i in range(5)] == [False, False, False, True, True]
    assert store.result_bytes == 200
    huge = _finished(store, "huge", b"x" * 1000)  # alone above the bound: still kept
    assert store.get("huge") is huge and huge.result == b"x" * 1000
    assert store.get("r4") is None
    assert store.result_bytes == 1000


def test_transitions_are_counted_and_a_finished_job_can_run_again() -> None:
    store = MemoryJobStore(ttl=3600, max_finished=10, max_result_bytes=1 << 20)
    first = _record("job")
    store.put(first)
    store.start(first)
    assert store.finish(first, JobState.failed, {"status_code": 500, "message": "boom"})
    assert not store.finish(first, JobState.succeeded)  # finished once, stays so
    assert first.done.is_set() and first.state is JobState.failed
    second = _record("job")
    store.put(second)
    assert store.get("job") is second
    assert store.counts()["failed"] == 0 and store.counts()["queued"] == 1
    store.finish(first, JobState.cancelled)  # a stale record no longer counts
    assert store.counts()["queued"] == 1


def _cycle_seconds(store: MemoryJobStore, prefix: str, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        record = _record(f"{prefix}-{i}")
        store.put(record)
        store.get(record.job_id)
        store.start(record)
        store.finish(record, JobState.succeeded, result=b"{}")
        store.counts()
    return time.perf_counter() - started


def test_the_cost_of_a_job_does_not_grow_with_the_jobs_remembered() -> None:
    small = MemoryJobStore(ttl=3600, max_finished=200_000, max_result_bytes=1 << 30)
    large = MemoryJobStore(ttl=3600, max_finished=200_000, max_result_bytes=1 << 30)
    _cycle_seconds(large, "fill", 20_000)
    assert len(large) == 20_000
    small_times, large_times = [], []
    for k in range(5):  # interleaved: the machine's load hits both alike
        small_times.append(_cycle_seconds(small, f"s{k}", 500))
        large_times.append(_cycle_seconds(large, f"l{k}", 500))
    assert min(large_times) < 3 * min(small_times), (small_times, large_times)


def test_the_cache_is_bounded_in_entries_and_bytes() -> None:
    cache = MemoryCache(max_entries=3, max_bytes=250)
    for key in "abcd":
        cache.set(key, b"x" * 10)
    assert [cache.get(k) is not None for k in "abcd"] == [False, True, True, True]
    cache.get("b")  # now the most recently used
    cache.set("e", b"y" * 235)  # c goes (4 entries), then d (255 bytes)
    assert cache.get("b") is not None and cache.get("e") is not None
    assert cache.get("c") is None and cache.get("d") is None
    assert cache.bytes == 245
    cache.set("big", b"z" * 251)  # larger than the whole cache: not kept, nothing evicted
    assert cache.get("big") is None and len(cache) == 2
