from io import StringIO
from types import SimpleNamespace

import pytest

from corehq.doctypemigrations.events import Events
from corehq.doctypemigrations.management.commands._events import CommandEvents
from corehq.doctypemigrations.selection import migrating_leaves, scan_doc_type_view
from corehq.doctypemigrations.stats import doc_type_counts
from tests import servers
from tests.couch.test_indexing import behind, waits_logged  # noqa: F401 (behind is a fixture)
from tests.doctypemigrations.helpers import RecordedEvents


def test_only_a_drawn_bar_asks_for_a_total_that_costs_a_query():
    asked = []

    def total():
        asked.append(True)
        return 4

    command = SimpleNamespace(say=print, warn=print, style=None)
    for events in (Events(), CommandEvents(command, 'slug', bars=None)):
        events.stage('Dumping', total=total)
        events.advanced('Dumping', 4)
        events.stage_done('Dumping')
    assert asked == []
    stream = StringIO()
    drawn = CommandEvents(command, 'slug', bars=stream)
    drawn.stage('Dumping', total=total, unit='docs')
    drawn.advanced('Dumping', 4)
    drawn.stage_done('Dumping')
    assert asked == [True]
    assert '100%' in stream.getvalue() and '/4' in stream.getvalue()


@pytest.mark.parametrize('phase', ['stats', 'dump', 'cleanup'])
def test_an_index_build_a_phase_waits_for_is_a_stage_of_its_events(
        behind, caplog, phase, couch_kind):  # noqa: F811
    events = RecordedEvents()
    if phase == 'stats':
        doc_type_counts(behind, ['CommCareUser'], events)
    elif phase == 'dump':
        next(scan_doc_type_view(behind, ['CommCareUser'], 10, events=events))
    else:
        next(migrating_leaves(behind, ['CommCareUser'], 10, events))
    total, done, ended = events.stages[f"Indexing all_docs/by_doc_type in {behind.name}"]
    assert ended
    if couch_kind == servers.POUCHDB:
        assert done == 0 and total is None  # pouchdb-server shows no indexer progress
    else:
        assert done > 0  # CouchDB lists the changes its indexers have done
    assert waits_logged(caplog)  # and logged too, for a run without a terminal
