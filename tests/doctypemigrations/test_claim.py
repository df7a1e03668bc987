"""The claim of the one run working on a migration, and the phase gates,
tested directly on real state rows (Django's test database)."""
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from corehq.doctypemigrations import claim as claims, state as states
from corehq.doctypemigrations.errors import CleanupRefused, MigrationBusy, PhaseRefused
from corehq.doctypemigrations.models import CLEANED, CLEANING, DUMPING, FOLLOWING, LOADING, DocTypeMigration

ELSEWHERE = 'another-host:4242:abc'


@pytest.fixture
def row(db):
    return DocTypeMigration.objects.create(slug='m', fingerprint='f', original_seq='0')


def test_a_fresh_claim_refuses_a_second_run_and_names_it(row):
    claims.claim(row, f"{ELSEWHERE}:initial")
    with pytest.raises(MigrationBusy, match=r"Another --initial of 'm' is running \(pid 4242 on another"):
        claims.claim(row, claims.new_owner(claims.INITIAL))
    assert claims.running_action(row) == claims.INITIAL


def test_a_cleanup_beside_a_follower_is_a_cleanup_refusal(row):
    claims.claim(row, f"{ELSEWHERE}:continuous")
    with pytest.raises(CleanupRefused, match='heartbeat is fresh'):
        claims.claim(row, claims.new_owner(claims.CLEANUP))


def test_a_claim_lapses_after_its_heartbeat_ages(row):
    claims.claim(row, f"{ELSEWHERE}:continuous")
    DocTypeMigration.objects.filter(pk=row.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=claims.HEARTBEAT_MAX_AGE + 1))
    assert claims.running_action(row) is None
    claims.claim(row, claims.new_owner(claims.CONTINUOUS))
    assert claims.running_action(row) == claims.CONTINUOUS


def test_a_claim_of_a_dead_process_on_this_host_is_free_at_once(row):
    gone = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True, check=True).stdout.strip()
    claims.claim(row, f"{socket.gethostname()}:{gone}:abc:initial")
    assert claims.running_action(row) is None
    claims.claim(row, claims.new_owner(claims.CLEANUP))


def test_release_and_beat_only_touch_the_owners_claim(row):
    mine = claims.new_owner(claims.INITIAL)
    claims.claim(row, mine)
    claims.release(row, f"{ELSEWHERE}:initial")  # not the holder: nothing happens
    assert claims.running_action(row) == claims.INITIAL
    assert claims.beat(row, mine) is True
    DocTypeMigration.objects.filter(pk=row.pk).update(runner=f"{ELSEWHERE}:continuous")
    assert claims.beat(row, mine) is False  # taken over
    claims.release(row, f"{ELSEWHERE}:continuous")
    assert claims.running_action(row) is None


def test_running_holds_the_claim_for_the_block_only(row):
    with claims.running(row, claims.CLEANUP, interval=0.05):
        assert claims.running_action(row) == claims.CLEANUP
        with pytest.raises(MigrationBusy):
            claims.claim(row, claims.new_owner(claims.INITIAL))
    assert claims.running_action(row) is None


def test_an_old_claim_without_its_phase_reads_as_a_follower():
    assert claims.owner_action('host:1:abc') == claims.CONTINUOUS


ALL = (states.NEW, DUMPING, LOADING, FOLLOWING, CLEANING, CLEANED)
RUNS = {
    'initial': {states.NEW, DUMPING, LOADING},
    'continuous': {FOLLOWING},
    'erase_continuous_progress': {FOLLOWING},
    'cleanup': {FOLLOWING, CLEANING, CLEANED},
    'delete_doc_conflicts': {FOLLOWING, CLEANING, CLEANED},
    'delete_state': {DUMPING, LOADING, FOLLOWING},  # the admin's delete, to start over
}


@pytest.mark.parametrize('action', sorted(RUNS))
@pytest.mark.parametrize('phase', ALL)
def test_every_gate_in_every_phase(row, action, phase):
    state = None if phase == states.NEW else row
    if state is not None:
        states.set_phase(state, phase)
    if phase in RUNS[action]:
        states.check(action, state, 'm')
    else:
        with pytest.raises(PhaseRefused) as refused:
            states.check(action, state, 'm')
        why = str(refused.value)
        assert ("cleanup has started" in why or "no recorded state" in why if action == 'delete_state'
                else "'m'" in why)
    assert set(states.GATES) == set(RUNS)


def test_the_admin_may_not_delete_a_state_while_a_run_holds_it(row):
    states.set_phase(row, FOLLOWING)
    states.check_deletable(row)
    claims.claim(row, f"{ELSEWHERE}:continuous")
    with pytest.raises(MigrationBusy, match='a --continuous is running'):
        states.check_deletable(row)
