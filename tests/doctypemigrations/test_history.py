"""The checkpoint history the admin draws: how many changes each checkpoint
covered (recorded by --continuous, never derived from seqs), summed per minute,
and the layout of the bar chart."""
from datetime import datetime, timedelta, timezone

from corehq.doctypemigrations import history, state as states
from corehq.doctypemigrations.follower import FollowSettings
from corehq.doctypemigrations.history import Minute, bar_chart, changes_per_minute, round_up
from corehq.doctypemigrations.migrator_instances import users_migration
from tests.doctypemigrations.helpers import run
from tests.doctypemigrations.test_follower import follower

T0 = datetime(2026, 12, 2, 9, 30, tzinfo=timezone.utc)
BATCHES_OF_5 = FollowSettings(batch_size=5, batch_seconds=5.0, max_wait=2.0, heartbeat_ms=500)


def at(minutes, seconds=0):
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def test_changes_are_summed_per_minute_with_idle_minutes_at_zero():
    pairs = [(at(0, 5), 3), (at(0, 50), 4), (at(2, 0), 10), (at(2, 59), 1), (at(3, 30), 6)]
    assert changes_per_minute(pairs) == [Minute(at(0), 7), Minute(at(1), 0), Minute(at(2), 11),
                                         Minute(at(3), 6)]


def test_only_the_latest_minutes_are_shown():
    pairs = [(at(minute), minute + 1) for minute in range(0, 10, 3)]  # minutes 0, 3, 6, 9
    shown = changes_per_minute(pairs, minutes=5)
    assert [m.start for m in shown] == [at(minute) for minute in range(5, 10)]
    assert [m.changes for m in shown] == [0, 7, 0, 0, 10]


def test_no_pairs_no_minutes():
    assert changes_per_minute([]) == []


def test_bars_are_as_tall_as_their_count_on_a_round_axis():
    chart = bar_chart([Minute(at(0), 30), Minute(at(1), 0), Minute(at(2), 15)], height=140, top=10, bottom=30)
    assert chart.plot_height == 100 and [tick.label for tick in chart.y_ticks] == ['0', '20', '40']
    assert [bar.height for bar in chart.bars] == [75.0, 0.0, 37.5]
    assert [bar.y + bar.height for bar in chart.bars] == [110.0] * 3  # all standing on the x axis
    assert chart.bars[0].x < chart.bars[1].x < chart.bars[2].x
    assert [tick.label for tick in chart.x_ticks] == ['09:30', '09:31', '09:32']
    assert chart.total == 45 and chart.minutes == 3


def test_a_single_minute_of_nothing_still_draws():
    chart = bar_chart([Minute(at(0), 0)])
    assert [bar.height for bar in chart.bars] == [0.0] and chart.y_ticks[-1].label == '2'
    assert [tick.label for tick in chart.x_ticks] == ['09:30']


def test_the_axis_maximum_is_round():
    assert [round_up(n) for n in (0, 1, 3, 4, 5, 11, 40, 41, 101, 999)] == \
        [2, 2, 4, 4, 10, 20, 40, 100, 200, 1000]


def test_continuous_records_the_changes_each_checkpoint_covered(migration_dbs, feed_replays):
    source, target = migration_dbs
    source.bulk_docs([{'_id': f"u{i}", 'doc_type': 'CommCareUser'} for i in range(4)])
    run('user_db_migration', '--initial')
    state = states.get(users_migration.slug)
    assert history.counted_pairs(state) == []  # the initial pair covers the load, not changes
    source.bulk_docs([{'_id': f"n{i}", 'doc_type': 'WebUser'} for i in range(12)])
    follower(source, target, settings=BATCHES_OF_5).run(until_caught_up=True)
    source.bulk_docs([{'_id': f"g{i}", 'doc_type': 'Group'} for i in range(3)])
    follower(source, target, settings=BATCHES_OF_5).run(until_caught_up=True)
    counts = [changes for _at, changes in history.counted_pairs(state)]
    assert len(counts) >= 4 and all(count >= 1 for count in counts)
    assert 12 + 3 <= sum(counts) <= 12 + 3 + len(counts) * feed_replays
    minutes = changes_per_minute(history.counted_pairs(state))
    assert sum(minute.changes for minute in minutes) == sum(counts)


def test_thinning_pairs_keeps_every_change_counted(migration_dbs, monkeypatch):
    run('user_db_migration', '--initial')
    state = states.get(users_migration.slug)
    monkeypatch.setattr(states, 'PAIRS_KEPT', 10)
    for i in range(40):
        states.record_pair(state, f"s{i}", f"t{i}", usable=True, changes=i + 1)
    assert state.seq_pairs.count() <= 20
    assert sum(changes for _at, changes in history.counted_pairs(state)) == sum(range(1, 41))
    newest = [pair.changes for pair in state.seq_pairs.order_by('id')][-4:]
    assert newest == [37, 38, 39, 40]  # the newest are never thinned
