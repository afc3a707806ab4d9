"""The event journal: time parsing, filters, rotation, and following another process's events."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.errors import InvalidSpec
from engine.events import Event, EventFilter, EventJournal, format_event_time, parse_event_time

SECOND = 1_000_000_000


def test_times_as_unix_rfc3339_and_durations() -> None:
    assert parse_event_time("1700000000") == 1_700_000_000 * SECOND
    assert parse_event_time("1700000000.5") == 1_700_000_000 * SECOND + 500_000_000
    assert parse_event_time("1700000000.000000001") == 1_700_000_000 * SECOND + 1
    assert parse_event_time("2023-11-14T22:13:20Z") == 1_700_000_000 * SECOND
    assert parse_event_time("2023-11-14T22:13:20.123456789Z") == 1_700_000_000 * SECOND + 123_456_789
    assert parse_event_time("2023-11-15T00:13:20+02:00") == 1_700_000_000 * SECOND
    assert parse_event_time("10m", now=1_700_000_600) == 1_700_000_000 * SECOND
    assert format_event_time(1_700_000_000 * SECOND + 5) == "2023-11-14T22:13:20.000000005Z"


@pytest.mark.parametrize("bad", ["yesterday", "", "2023-13-45", "-5", "1e9"])
def test_a_bad_time_names_the_value(bad: str) -> None:
    with pytest.raises(InvalidSpec, match="invalid time"):
        parse_event_time(bad)


def _ev(
    type: str = "container", action: str = "start", id: str = "abc123", tenant: str = "t1", **attrs: str
) -> Event:
    return Event(type, action, id, dict(attrs), tenant, 1)


def test_filters_or_within_a_key_and_across_keys() -> None:
    f = EventFilter.parse({"type": ["container"], "event": ["start", "die"]})
    assert f.matches(_ev(action="start"))
    assert f.matches(_ev(action="die"))
    assert not f.matches(_ev(action="create"))
    assert not f.matches(_ev(type="image", action="start"))
    # Docker's map form {"event": {"start": true}} means the same
    assert EventFilter.parse({"event": {"start": True, "die": False}}).terms == {
        "event": frozenset({"start"})
    }


def test_exec_events_match_their_base_action() -> None:
    f = EventFilter.from_args(["event=exec_start"])
    assert f.matches(_ev(action="exec_start: sh -c true"))
    assert not f.matches(_ev(action="exec_create: sh -c true"))


def test_container_image_and_label_filters() -> None:
    web = _ev(id="f00dfeed", name="web", image="busybox", tier="front")
    assert EventFilter.from_args(["container=web"]).matches(web)
    assert EventFilter.from_args(["container=f00d"]).matches(web)
    assert not EventFilter.from_args(["container=db"]).matches(web)
    assert EventFilter.from_args(["image=busybox"]).matches(web)
    assert EventFilter.from_args(["label=tier"]).matches(web)
    assert EventFilter.from_args(["label=tier=front"]).matches(web)
    assert not EventFilter.from_args(["label=tier=back"]).matches(web)
    connect = _ev(type="network", action="connect", id="n1", name="backend", container="f00dfeed")
    assert EventFilter.from_args(["container=f00dfeed"]).matches(connect)
    assert EventFilter.from_args(["network=backend"]).matches(connect)
    assert not EventFilter.from_args(["volume=backend"]).matches(connect)
    pulled = _ev(type="image", action="pull", id="sha256:1", name="busybox:latest")
    assert EventFilter.from_args(["image=busybox:latest"]).matches(pulled)


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"colour": ["red"]}, "invalid filter 'colour'"),
        ({"tenant": ["other"]}, "invalid filter 'tenant'"),  # never from the client: the door sets it
        ({"type": ["spaceship"]}, "invalid filter type='spaceship'"),
        ({"type": [3]}, "values must be strings"),
    ],
)
def test_bad_filters_are_refused(filters: dict[str, list[object]], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        EventFilter.parse(filters)  # type: ignore[arg-type]


def test_docker_types_we_never_record_and_the_local_scope() -> None:
    assert not EventFilter.from_args(["type=daemon"]).matches(_ev())
    assert EventFilter.from_args(["scope=local"]).matches(_ev())
    assert not EventFilter.from_args(["scope=swarm"]).matches(_ev())


def test_the_tenant_term_confines_whatever_the_client_asks() -> None:
    f = EventFilter.parse({"container": ["web"]}, tenant="t1")
    assert f.matches(_ev(name="web", tenant="t1"))
    assert not f.matches(_ev(name="web", tenant="t2"))
    assert not EventFilter.parse(None, tenant="t1").matches(_ev(tenant=""))


def test_journal_reads_since_until_and_filtered(tmp_path: Path) -> None:
    clock = iter(range(1, 100))
    journal = EventJournal(tmp_path, clock=lambda: next(clock) * SECOND)
    for action in ("create", "start", "die", "destroy"):
        journal.record("container", action, "c1", {"name": "web"}, tenant="t1")
    journal.record("volume", "create", "data", tenant="t2")
    assert [e.action for e in journal.read()] == ["create", "start", "die", "destroy", "create"]
    assert [e.action for e in journal.read(since=2 * SECOND, until=3 * SECOND)] == ["start", "die"]
    only_t2 = EventFilter.parse(None, tenant="t2")
    assert [(e.type, e.id) for e in journal.read(only_t2)] == [("volume", "data")]
    first = next(iter(journal.read()))
    assert (first.attributes, first.tenant, first.time_nano) == ({"name": "web"}, "t1", SECOND)


def test_journal_is_bounded_by_rotation(tmp_path: Path) -> None:
    journal = EventJournal(tmp_path, max_bytes=1000)
    for i in range(200):
        journal.record("container", "start", f"c{i}")
    sizes = [p.stat().st_size for p in tmp_path.glob("events.log*")]
    assert len(sizes) == 2 and all(s <= 1000 for s in sizes)
    ids = [e.id for e in journal.read()]
    assert ids[-1] == "c199" and "c0" not in ids
    assert ids == sorted(ids, key=lambda i: int(i[1:]))  # the rotated file is read first, in order


def test_a_torn_or_garbage_line_is_skipped(tmp_path: Path) -> None:
    journal = EventJournal(tmp_path)
    journal.record("container", "start", "c1")
    with open(journal.current, "ab") as f:
        f.write(b'not json\n{"t": 5}\n')
    journal.record("container", "die", "c1")
    assert [e.action for e in journal.read()] == ["start", "die"]


def test_an_unwritable_journal_does_not_fail_the_change(tmp_path: Path) -> None:
    blocker = tmp_path / "events"
    blocker.write_text("a file where the directory should be")
    assert EventJournal(blocker).record("container", "start", "c1") is None


def test_follow_sees_another_process_and_survives_rotations(tmp_path: Path) -> None:
    """Another process appends in bursts of ten (up to two rotations each) while we follow."""
    journal = EventJournal(tmp_path, max_bytes=600)
    journal.record("container", "create", "before")
    seen: list[str] = []
    caught_up = threading.Condition()
    stop = threading.Event()

    def reader() -> None:
        for event in journal.read(follow=True, stop=stop.is_set, poll_seconds=0.01):
            with caught_up:
                seen.append(event.id)
                caught_up.notify_all()

    thread = threading.Thread(target=reader)
    thread.start()
    writer = (
        "import sys; from pathlib import Path; from engine.events import EventJournal\n"
        "j = EventJournal(Path(sys.argv[1]), max_bytes=600)\n"
        "for i in range(int(sys.argv[2]), int(sys.argv[2]) + 10): j.record('container', 'start', f'w{i}')\n"
    )
    try:
        for first in (0, 10, 20):
            subprocess.run([sys.executable, "-c", writer, str(tmp_path), str(first)], check=True, timeout=60)
            expected = 1 + first + 10
            with caught_up:
                assert caught_up.wait_for(lambda n=expected: len(seen) >= n, timeout=30), seen
    finally:
        stop.set()
        thread.join(timeout=30)
    assert seen == ["before", *(f"w{i}" for i in range(30))]  # nothing lost or doubled
    assert len(list(tmp_path.glob("events.log*"))) == 2


def test_hpctl_prints_an_event_like_docker_and_never_a_control_character() -> None:
    from engine.cli.events import event_line

    e = Event("container", "start", "c1", {"name": "web", "evil": "\x1b]0;owned\x07\n"}, "t", SECOND + 5)
    assert event_line(e) == "1970-01-01T00:00:01.000000005Z container start c1 (evil=?]0;owned??, name=web)"


def test_a_later_tenant_of_a_purged_name_never_reads_the_old_events(tmp_path: Path) -> None:
    clock = iter(range(1, 100))
    journal = EventJournal(tmp_path, clock=lambda: next(clock) * SECOND)
    journal.record("container", "create", "old", tenant="acme")
    journal.record("container", "create", "bystander", tenant="globex")
    journal.forget_tenant("acme")
    journal.record("container", "create", "new", tenant="acme")
    acme = EventFilter.parse(None, tenant="acme")
    assert [e.id for e in journal.read(acme)] == ["new"]
    assert [e.id for e in journal.read(acme, since=0)] == ["new"]  # an early since does not reach back
    assert [e.id for e in journal.read()] == ["old", "bystander", "new"]  # the operator keeps them
    assert [e.id for e in journal.read(EventFilter.parse(None, tenant="globex"))] == ["bystander"]
