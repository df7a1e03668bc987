from io import StringIO
from types import SimpleNamespace

from corehq.doctypemigrations.events import Events
from corehq.doctypemigrations.management.commands._events import CommandEvents


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
