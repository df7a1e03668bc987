"""The seq pairs (source seq, target seq) recorded by --initial and --continuous,
and the rule that makes a pair usable: every source change after its source
seq shows up in the target's feed after its target seq."""
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from corehq.doctypemigrations import state as states
from corehq.doctypemigrations.events import Events
from corehq.doctypemigrations.follower import FollowSettings
from corehq.doctypemigrations.initial import InitialSettings, run_initial
from corehq.doctypemigrations.migrator_instances import users_migration
from corehq.doctypemigrations.models import DocTypeMigrationSeqPair
from corehq.doctypemigrations.pairs import at_or_after
from corehq.doctypemigrations.selection import DocTypeSelection, parse_change
from tests.doctypemigrations.helpers import run, server_feed  # noqa: F401 (a fixture)
from tests.doctypemigrations.test_follower import follower

SMALL = InitialSettings(page_size=10, batch_bytes=4096, batch_docs=10)
TINY_BATCHES = FollowSettings(batch_size=5, batch_seconds=5.0, max_wait=2.0, heartbeat_ms=500)
SELECTION = DocTypeSelection(users_migration.all_doc_types)
FEED = {}


def feed_after(db, seq):
    """{doc id: its change} of every row of ``db``'s feed after ``seq``, read from the server itself."""
    return {doc_id: parse_change(row) for doc_id, row in FEED['feed'].rows_after(db, seq).items()}


@pytest.fixture(autouse=True)
def the_feed(server_feed):  # noqa: F811 (the fixture)
    FEED['feed'] = server_feed


def missed(source, target, pair):
    """Migrating docs whose latest source change is after the pair's source seq
    but whose latest target change is not after its target seq: what a
    consumer moved by this pair would miss."""
    in_target = feed_after(target, None)
    after_t = feed_after(target, states.decode_seq(pair.target_seq))
    return sorted(doc_id for doc_id, change in feed_after(source, states.decode_seq(pair.source_seq)).items()
                  if (SELECTION.wants(change) or doc_id in in_target) and doc_id not in after_t)


def test_initial_records_a_usable_pair_at_the_dump_end_and_the_target_after_the_load(migration_dbs):
    source, target = migration_dbs
    source.bulk_docs([{'_id': f"u{i}", 'doc_type': 'CommCareUser'} for i in range(30)])
    run('user_db_migration', '--initial')
    state = states.get(users_migration.slug)
    [pair] = DocTypeMigrationSeqPair.objects.filter(migration=state)
    assert pair.usable
    assert states.decode_seq(pair.source_seq) == states.dump_end_seq(state) == source.update_seq()
    assert states.decode_seq(pair.target_seq) == target.update_seq()
    source.bulk_docs([{'_id': f"later{i}", 'doc_type': 'WebUser'} for i in range(3)])
    run('user_db_migration', '--continuous', '--until-caught-up')
    assert missed(source, target, pair) == []


def test_continuous_records_a_pair_at_each_checkpoint_with_the_target_seq_after_the_batch(migration_dbs):
    source, target = migration_dbs
    run('user_db_migration', '--initial')
    source.bulk_docs([{'_id': f"c{i}", 'doc_type': 'Group'} for i in range(12)])
    follower(source, target, settings=TINY_BATCHES).run(until_caught_up=True)
    state = states.get(users_migration.slug)
    pairs = list(state.seq_pairs.order_by('id'))
    assert len(pairs) >= 1 + 12 // 5  # the initial one, then one per batch
    latest = pairs[-1]
    assert states.decode_seq(latest.source_seq) == states.latest_checkpoint(state)
    assert states.decode_seq(latest.target_seq) == target.update_seq()  # nothing wrote to it since
    assert all(pair.usable for pair in pairs)  # nothing was written while dumping
    for pair in pairs:
        assert missed(source, target, pair) == []


class WriteWhileDumping(Events):
    """Edits docs the dump has not read yet, after each dumped page: the load
    then copies those edits, and --continuous's replay of them writes nothing."""

    def __init__(self, source, ids):
        self.source = source
        self.ids = list(ids)

    def advanced(self, name, n):
        for doc_id in self.ids[-3:] if name == 'Dumping' else ():
            doc = self.source.get(doc_id)
            self.source.put(dict(doc, edited_while_dumping=True))
            self.ids.remove(doc_id)


def test_pairs_before_the_dump_end_are_not_usable_and_would_miss_changes(migration_dbs, feed_replays):
    source, target = migration_dbs
    source.bulk_docs([{'_id': f"u{i:03}", 'doc_type': 'CommCareUser'} for i in range(200)])
    source.bulk_docs([{'_id': f"other{i}", 'doc_type': 'Domain'} for i in range(20)])
    run_initial(users_migration, source, target, 'dump.log', SMALL,
                WriteWhileDumping(source, [f"u{i:03}" for i in range(150, 200)]))
    follower(source, target, settings=TINY_BATCHES).run(until_caught_up=True)
    pairs = list(states.get(users_migration.slug).seq_pairs.order_by('id'))
    unusable = [pair for pair in pairs if not pair.usable]
    assert unusable, "the replay from before the dump recorded no pair"
    assert any(missed(source, target, pair) for pair in unusable)  # what the rule protects from
    usable = [pair for pair in pairs if pair.usable]
    assert usable[0] == pairs[0]  # --initial's
    if len(usable) > 1:
        assert pairs.index(usable[1]) > pairs.index(unusable[-1])  # once usable, always (in one run)
    else:  # a replayed row makes the judge err towards "not usable", and it may have no later checkpoint
        assert feed_replays
    for pair in usable:
        assert missed(source, target, pair) == []


def test_at_or_after_asks_the_server(migration_dbs, feed_replays):
    source, _target = migration_dbs
    before = source.update_seq()
    source.bulk_docs([{'_id': f"x{i}", 'doc_type': 'Group'} for i in range(feed_replays + 3)])
    after = source.update_seq()
    assert at_or_after(source, after, before)
    assert not at_or_after(source, before, after)
    if not feed_replays:  # a replayed row makes a count larger: the answer errs towards False
        assert at_or_after(source, after, after)


def test_pairs_are_thinned_keeping_the_newest_and_the_first_usable(migration_dbs, monkeypatch):
    source, target = migration_dbs
    run('user_db_migration', '--initial')
    state = states.get(users_migration.slug)
    monkeypatch.setattr(states, 'PAIRS_KEPT', 10)
    first = state.seq_pairs.get()
    for i in range(40):
        states.record_pair(state, f"s{i}", f"t{i}", usable=i % 2 == 0)
    kept = list(state.seq_pairs.order_by('id'))
    assert first in kept and len(kept) <= 40 // 2
    assert [states.decode_seq(pair.source_seq) for pair in kept[-5:]] == [f"s{i}" for i in range(35, 40)]


def test_status_shows_the_latest_pair(migration_dbs, feed_replays):
    source, target = migration_dbs
    source.bulk_docs([{'_id': f"u{i}", 'doc_type': 'CommCareUser'} for i in range(5)])
    run('user_db_migration', '--initial')
    source.put({'_id': 'later', 'doc_type': 'Group'})
    run('user_db_migration', '--continuous', '--until-caught-up')
    latest = states.latest_pair(states.get(users_migration.slug))
    out = StringIO()
    with pytest.raises(CommandError, match='follower_dead'):  # no --continuous runs now
        call_command('run_doctype_migration', 'user_db_migration', '--status', '--json', stdout=out)
    pair = json.loads(out.getvalue())['seq_pair']
    assert pair['source_seq'] == states.decode_seq(latest.source_seq)
    assert pair['source_seq'] == states.latest_checkpoint(latest.migration)
    assert pair['target_seq'] == target.update_seq()
    # a feed that replays rows makes the count that judges a pair err towards "not usable": safe
    assert pair['usable'] == latest.usable and (pair['usable'] is True or feed_replays)
    text = StringIO()
    with pytest.raises(CommandError, match='follower_dead'):
        call_command('run_doctype_migration', 'user_db_migration', '--status', stdout=text)
    assert f"seq pair    source {pair['source_seq']} = target {pair['target_seq']} at " in text.getvalue()
