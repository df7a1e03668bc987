"""Issue 11: the whole migration against a server that rate-limits, goes
quiet and goes away, through the real proxy in front of the real server."""
import logging
import os
import threading
import time

import pytest
from django.core.management.base import CommandError

from corehq.couch import CouchDB, CouchUnreachable, PhaseBudget
from tests.doctypemigrations.data import seed
from tests.doctypemigrations.helpers import run, visible_trees
from tests.doctypemigrations.test_follower import FAST, follower
from tests.waiting import wait_for

SLUG = 'user_db_migration'


def live_ids(db):
    return {row['id'] for row in db.all_docs() if not row['id'].startswith('_design/')}


def test_every_phase_completes_with_15_percent_429s_and_the_copy_is_faithful(proxied_dbs, caplog):
    proxy, source, target = proxied_dbs
    migrating, staying = seed(source)
    proxy.rate_limit_probability = 0.15
    proxy.rate_limit_seed = 3
    with caplog.at_level(logging.WARNING, logger='corehq.couch'):
        run(SLUG, '--stats')
        run(SLUG, '--initial')
        writer = threading.Thread(target=write_one_by_one, args=(source, 40))
        writer.start()  # while --continuous copies, and through the same 429s
        run(SLUG, '--continuous', '--until-caught-up')
        writer.join()
        run(SLUG, '--continuous', '--until-caught-up')  # what the writer wrote after that caught up
        ids = migrating + [f"late{i}" for i in range(40)]
        assert visible_trees(target, ids) == visible_trees(source, ids)
        assert 'agree on every migrating doc' in run(SLUG, '--verify')
        assert 'Cleanup complete' in run(SLUG, '--cleanup', '--noinput', '--canary-wait', '0')
    assert live_ids(source) == set(staying)
    assert proxy.rate_limited > 10
    assert any('rate limited by the server, slowing down' in r.getMessage() for r in caplog.records)


def write_one_by_one(db, count):
    for i in range(count):
        db.put({'_id': f"late{i}", 'doc_type': 'WebUser'})
        time.sleep(0.02)


def test_429s_slow_the_phase_down_and_it_recovers(couch_proxy, db_prefix):
    budget = PhaseBudget()
    db = CouchDB(f"{couch_proxy.url}/{db_prefix}", budget=budget)
    db.create()
    couch_proxy.rate_limit_probability = 1.0
    couch_proxy.rate_limit_paths = r'^GET /[^/?]+$'  # GET <db>: info only
    threads = [threading.Thread(target=db.info) for _ in range(1)]
    for t in threads:
        t.start()
    time.sleep(3)
    slowed_to, pages = budget.interval, budget.scale(100)
    couch_proxy.rate_limit_probability = 0.0
    for t in threads:
        t.join()
    assert slowed_to > 0 and pages < 100  # slower and smaller while refused
    for _ in range(40):
        db.all_docs(limit=1)
    assert budget.interval == 0 and budget.scale(100) == 100  # and back to full speed


def test_a_phase_gives_up_after_its_budget(proxied_dbs, capsys):
    proxy, source, target = proxied_dbs
    proxy.rate_limit_probability = 1.0
    started = time.monotonic()
    with pytest.raises(CommandError, match='rate limited by the server: gave up after'):
        run(SLUG, '--stats', '--give-up-after', '3')
    assert time.monotonic() - started < 40


def test_a_wrong_server_fails_at_once_even_with_a_long_budget(migration_dbs):
    budget = PhaseBudget(give_up_after=None)
    db = CouchDB('http://127.0.0.1:9/nothing', budget=budget)
    started = time.monotonic()
    with pytest.raises(CouchUnreachable, match='connection refused'):
        db.info()
    assert time.monotonic() - started < 10


def test_an_idle_feed_is_quiet_and_the_next_write_arrives_at_once(migration_dbs, couch_settings, caplog):
    run(SLUG, '--initial')
    budget = PhaseBudget(give_up_after=None)
    # the same databases, with the credentials (a CouchDB's url has none)
    source, target = (CouchDB(couch_settings.db_url(name), budget=budget) for name in (None, 'users'))
    waits, starts = recorded_waits(source)
    written = {}

    def write_after_quiet():
        # several longpoll waits (2 s each here) that ended with nothing to read
        wait_for(lambda: [changed for _, _, changed in waits].count(False) >= 3, what='3 quiet waits')
        # then just after a wait began, with nearly all of its time left
        begun = len(starts)
        wait_for(lambda: len(starts) > begun, what='the next wait')
        before = time.monotonic()
        source.put({'_id': 'after-the-quiet', 'doc_type': 'CommCareUser'})
        written['between'] = (before, time.monotonic())
        wait_for(lambda: target.get('after-the-quiet') is not None, what='the write copied')
        written['copied'] = True

    writer = threading.Thread(target=write_after_quiet)
    writer.start()
    with caplog.at_level(logging.INFO):
        follower(source, target).run(stop=lambda: 'copied' in written)
    writer.join()
    # The wait under way once the write was in, with time left, ended on it: not at its limit.
    _, after = written['between']
    woken = [changed for started, ended, changed in waits
             if ended > after and started + FAST.max_wait > after]
    assert woken[0] is True, waits
    noisy = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == []


def recorded_waits(db):
    """([(started, ended, changed) of each of ``db.wait_for_change``, as they
    end], [when each began])."""
    waits, starts = [], []
    wait = db.wait_for_change

    def recorded(*args, **kwargs):
        starts.append(time.monotonic())
        changed = wait(*args, **kwargs)
        waits.append((starts[-1], time.monotonic(), changed))
        return changed
    db.wait_for_change = recorded
    return waits, starts


# -- big attachments -------------------------------------------------------------------

def test_a_doc_larger_than_the_request_limit_migrates_with_its_history(proxied_dbs):
    import os as _os
    from tests.doctypemigrations.helpers import attachment, trees
    proxy, source, target = proxied_dbs
    photo, scan = _os.urandom(30_000), _os.urandom(20_000)
    rev1 = source.put({'_id': 'big', 'doc_type': 'CommCareUser', 'v': 1})['rev']
    source.put({'_id': 'big', '_rev': rev1, 'doc_type': 'CommCareUser', 'v': 2,
                '_attachments': {'photo.jpg': dict(attachment(photo), content_type='image/jpeg')}})
    source.put({'_id': 'small', 'doc_type': 'CommCareUser'})
    proxy.max_request_bytes = 36_000  # the base64 photo alone is 40 kB: no _bulk_docs can carry it
    run(SLUG, '--initial')
    assert trees(target, ['big']) == trees(source, ['big'])
    assert target.request('GET', 'big/photo.jpg').content == photo
    # an edit that adds a second attachment, copied by --continuous
    assert proxy.count('PUT', r'/big\?') == 1  # as a multipart PUT
    # an edit that adds a second attachment: photo and scan together are over
    # the limit too, but the target has the photo already, so only the scan goes
    doc = source.get('big')
    source.put(dict(doc, v=3, _attachments=dict(doc['_attachments'], **{'scan.bin': attachment(scan)})))
    proxy.reset()
    run(SLUG, '--continuous', '--until-caught-up')
    assert trees(target, ['big', 'small']) == trees(source, ['big', 'small'])
    assert target.request('GET', 'big/scan.bin').content == scan
    assert target.request('GET', 'big/photo.jpg').content == photo
    assert proxy.bytes_received < len(photo)  # the photo was not sent again


# -- requests in flight ------------------------------------------------------------------

@pytest.mark.parametrize('workers', [1, 4])
def test_initial_verify_and_cleanup_keep_several_requests_in_flight(proxied_dbs, workers):
    proxy, source, target = proxied_dbs
    source.bulk_docs([{'_id': f"u{i:03}", 'doc_type': 'CommCareUser'} for i in range(60)]
                     + [{'_id': f"d{i:03}", 'doc_type': 'Domain'} for i in range(10)])
    proxy.latency = 0.05  # a link to a remote cluster
    for phase in (('--initial',), ('--verify',), ('--cleanup', '--noinput', '--canary-wait', '0')):
        proxy.reset()
        run(SLUG, *phase, '--page-size', '5', '--workers', str(workers))
        if workers == 1:
            assert proxy.max_in_flight == 1, phase
        else:
            # verify reads the feed page after page (each needs the last seq
            # of the one before) while workers check pages against the target
            assert proxy.max_in_flight >= (2 if phase == ('--verify',) else 3), phase
    assert live_ids(source) == {f"d{i:03}" for i in range(10)}
    assert {f"u{i:03}" for i in range(60)} <= live_ids(target)


def test_the_dump_reads_attachment_data_a_bounded_amount_at_a_time(proxied_dbs, tmp_path):
    from corehq.doctypemigrations import initial
    from corehq.doctypemigrations.migrator_instances import users_migration
    from tests.doctypemigrations.helpers import attachment, trees
    proxy, source, target = proxied_dbs
    photos = {f"p{i:02}": os.urandom(60_000) for i in range(12)}  # 80 kB each as base64
    source.bulk_docs([{'_id': doc_id, 'doc_type': 'CommCareUser',
                       '_attachments': {'photo.jpg': attachment(data)}}
                      for doc_id, data in photos.items()]
                     + [{'_id': f"plain{i}", 'doc_type': 'CommCareUser'} for i in range(20)])
    proxy.reset()
    settings = initial.DEFAULT_SETTINGS._replace(attachment_bytes=150_000)
    initial.run_initial(users_migration, source, target, str(tmp_path / 'dump.log'), settings=settings)
    # all 12 photos in one response would be about 1 MB; two at a time, 160 kB
    assert 100_000 < proxy.largest_response['_bulk_get'] < 300_000
    ids = [*photos, *(f"plain{i}" for i in range(20))]
    assert trees(target, ids) == trees(source, ids)
    assert all(target.request('GET', f"{doc_id}/photo.jpg").content == data
               for doc_id, data in photos.items())


def test_continuous_sends_attachment_data_a_bounded_amount_at_a_time(proxied_dbs):
    from corehq.doctypemigrations.follower import FollowSettings
    from tests.doctypemigrations.helpers import attachment, trees
    from tests.doctypemigrations.test_follower import FAST
    proxy, source, target = proxied_dbs
    run(SLUG, '--initial')
    photos = {f"p{i:02}": os.urandom(60_000) for i in range(12)}  # 80 kB each as base64
    source.bulk_docs([{'_id': doc_id, 'doc_type': 'CommCareUser',
                       '_attachments': {'photo.jpg': attachment(data)}}
                      for doc_id, data in photos.items()])
    proxy.reset()
    follower(source, target, settings=FollowSettings(**dict(FAST._asdict(), attachment_bytes=150_000))).run(
        until_caught_up=True)
    # all 12 photos in one _bulk_docs would be about 1 MB; two at a time, 160 kB
    assert 100_000 < proxy.largest_request['_bulk_docs'] < 300_000
    assert trees(target, list(photos)) == trees(source, list(photos))
    assert all(target.request('GET', f"{doc_id}/photo.jpg").content == data
               for doc_id, data in photos.items())


@pytest.mark.parametrize('workers, in_flight', [(1, 1), (4, 4)])
def test_continuous_reads_changed_attachments_several_at_once(proxied_dbs, workers, in_flight):
    """Each changed attachment is a GET of its own: over a slow link they go
    several at once, as many as --workers allows."""
    from tests.doctypemigrations.helpers import attachment, trees
    proxy, source, target = proxied_dbs
    run(SLUG, '--initial')
    photos = {f"p{i:02}": os.urandom(20_000) for i in range(8)}
    source.bulk_docs([{'_id': doc_id, 'doc_type': 'CommCareUser',
                       '_attachments': {'photo.jpg': attachment(data)}}
                      for doc_id, data in photos.items()])
    proxy.reset()
    proxy.latency = 0.05
    run(SLUG, '--continuous', '--until-caught-up', '--workers', str(workers))
    assert proxy.count('GET', r'/photo\.jpg\?') == len(photos)
    assert proxy.max_in_flight_at['photo.jpg'] == in_flight
    assert trees(target, list(photos)) == trees(source, list(photos))
    assert all(target.request('GET', f"{doc_id}/photo.jpg").content == data
               for doc_id, data in photos.items())


def test_after_a_429_requests_carry_fewer_docs_and_the_copy_is_still_faithful(proxied_dbs, tmp_path):
    """A 429 halves what each request carries, not only how many are in
    flight, then it grows back with each success (as the replicator does)."""
    from corehq.doctypemigrations import cleanup, initial
    from corehq.doctypemigrations.migrator_instances import users_migration
    from tests.doctypemigrations.helpers import trees
    proxy, source, target = proxied_dbs
    ids = [f"u{i:03}" for i in range(400)]
    source.bulk_docs([{'_id': doc_id, 'doc_type': 'CommCareUser'} for doc_id in ids])
    budget = PhaseBudget()
    source, target = CouchDB(source.url, budget=budget), CouchDB(target.url, budget=budget)
    settings = initial.InitialSettings(page_size=40, batch_bytes=1 << 20, batch_docs=40, workers=1)

    def served_with_429s(path, phase):
        """How many requests to ``path`` the server answered, while a third of them get 429."""
        proxy.reset()
        proxy.rate_limit_paths, proxy.rate_limit_probability, proxy.rate_limit_seed = path, 0.3, 1
        phase()
        proxy.rate_limit_probability = 0.0
        return proxy.count('POST', path) - proxy.rate_limited

    # without 429s, each phase would send 400 / 40 = 10 of them
    dump = str(tmp_path / 'dump.log')
    assert served_with_429s('_bulk_get', lambda: initial.run_initial(
        users_migration, source, target, dump, settings=settings, check_disk=False)) > 10
    assert trees(target, ids) == trees(source, ids)
    small_pages = cleanup.CleanupSettings(page_size=40)
    assert served_with_429s('_bulk_docs',
                            lambda: cleanup.clean_up(users_migration, source, target, small_pages)) > 10
    assert all(tree['deleted'] for tree in trees(source, ids).values())


def test_the_dumps_fetches_are_bounded_by_bytes_not_by_a_count_of_docs(proxied_dbs, tmp_path):
    from corehq.doctypemigrations import initial
    from corehq.doctypemigrations.migrator_instances import users_migration
    from tests.doctypemigrations.helpers import trees
    proxy, source, target = proxied_dbs
    ids = [f"big{i:03}" for i in range(300)]
    source.bulk_docs([{'_id': doc_id, 'doc_type': 'CommCareUser', 'notes': os.urandom(5_000).hex()}
                      for doc_id in ids])  # 10 kB each
    settings = initial.InitialSettings(page_size=40, batch_bytes=40_000, batch_docs=40, workers=4)
    initial.run_initial(users_migration, source, target, str(tmp_path / 'dump.log'), settings=settings,
                        check_disk=False)
    # 40 docs a fetch would be 400 kB. The first fetches (those in flight or
    # read ahead before one is measured) are 16 docs, 160 kB; then 4, 40 kB.
    assert proxy.largest_response['_bulk_get'] < 250_000
    assert proxy.count('POST', '_bulk_get') > 30
    assert trees(target, ids) == trees(source, ids)


@pytest.mark.parametrize('command', ['sync_couch_views', 'delete_doc_conflicts'])
def test_the_other_commands_retry_under_a_phase_budget_too(proxied_dbs, command):
    from io import StringIO
    from django.core.management import call_command
    proxy, source, target = proxied_dbs
    seed(source)
    run(SLUG, '--initial')  # delete_doc_conflicts runs after it
    proxy.rate_limit_probability, proxy.rate_limit_seed = 0.3, 5
    call_command(command, stdout=StringIO())
    assert proxy.rate_limited > 0
    proxy.rate_limit_probability = 1.0
    started = time.monotonic()
    with pytest.raises(CommandError, match='rate limited by the server: gave up after'):
        call_command(command, '--give-up-after', '2', stdout=StringIO())
    assert time.monotonic() - started < 40
