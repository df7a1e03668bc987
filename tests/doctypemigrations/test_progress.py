from io import StringIO

from corehq.doctypemigrations.progress import no_progress, terminal_progress


def test_only_a_drawn_bar_asks_for_a_total_that_costs_a_query():
    asked = []

    def total():
        asked.append(True)
        return 4

    with no_progress('Dumping', total=total) as bar:
        bar.update(4)
    assert asked == []
    stream = StringIO()
    with terminal_progress(stream)('Dumping', total=total, unit='docs') as bar:
        bar.update(4)
    assert asked == [True]
    drawn = stream.getvalue()
    assert '100%' in drawn and '/4' in drawn
