"""A migration's checkpoint history as changes copied per minute, and the
layout of the small bar chart the admin draws of it.

Seqs are opaque, so the count of changes is never derived from them: each
seq pair records how many source changes its checkpoint covered (see
DocTypeMigrationSeqPair.changes), and a minute counts the changes of the pairs
recorded in it. A pair thinned out of the table handed its count to the next
one, so older minutes may gather the changes of a longer stretch.
"""
from collections import namedtuple
from datetime import timedelta

MINUTES_SHOWN = 60
MAX_BAR_WIDTH = 24  # a lone minute is a bar, not a block filling the chart

Minute = namedtuple('Minute', 'start changes')
Bar = namedtuple('Bar', 'x y width height start changes')
Tick = namedtuple('Tick', 'position label')
Chart = namedtuple('Chart', 'width height plot_left plot_top plot_width plot_height bars y_ticks x_ticks '
                            'total minutes')


def counted_pairs(state):
    """(recorded_at, changes) of the pairs that counted their changes, oldest first."""
    counted = state.seq_pairs.filter(changes__isnull=False).order_by('id')
    return list(counted.values_list('recorded_at', 'changes'))


def changes_per_minute(pairs, minutes=MINUTES_SHOWN):
    """The changes of ``pairs`` ((recorded_at, changes)) summed per minute, for
    the ``minutes`` up to the last one with a pair, oldest first; a minute
    with no checkpoint counts 0 (the follower had nothing to copy, or did not run)."""
    per_minute = {}
    for recorded_at, changes in pairs:
        start = recorded_at.replace(second=0, microsecond=0)
        per_minute[start] = per_minute.get(start, 0) + changes
    if not per_minute:
        return []
    last = max(per_minute)
    first = max(min(per_minute), last - timedelta(minutes=minutes - 1))
    count = int((last - first).total_seconds() // 60) + 1
    return [Minute(start, per_minute.get(start, 0))
            for start in (first + timedelta(minutes=i) for i in range(count))]


def bar_chart(minutes, width=640, height=180, left=56, right=12, top=12, bottom=40):
    """Where each minute's bar goes in a ``width`` x ``height`` drawing, with
    room for the axes' labels: the y axis from 0 to a round maximum, the x
    axis labelled with the first, middle and last minute (UTC)."""
    plot_width, plot_height = width - left - right, height - top - bottom
    top_value = round_up(max((m.changes for m in minutes), default=0))
    slot = plot_width / max(len(minutes), 1)
    bars = []
    for index, minute in enumerate(minutes):
        bar_height = plot_height * minute.changes / top_value
        bar_width = min(max(slot * 0.8, 1), MAX_BAR_WIDTH)
        bars.append(Bar(x=round(left + (index + 0.5) * slot - bar_width / 2, 1),
                        y=round(top + plot_height - bar_height, 1),
                        width=round(bar_width, 1), height=round(bar_height, 1),
                        start=minute.start, changes=minute.changes))
    y_ticks = [Tick(round(top + plot_height - plot_height * value / top_value, 1), str(value))
               for value in (0, top_value // 2, top_value)]
    labelled = sorted({0, len(minutes) // 2, len(minutes) - 1}) if minutes else []
    x_ticks = [Tick(round(left + (index + 0.5) * slot, 1), minutes[index].start.strftime('%H:%M'))
               for index in labelled]
    return Chart(width, height, left, top, plot_width, plot_height, bars, y_ticks, x_ticks,
                 total=sum(m.changes for m in minutes), minutes=len(minutes))


def round_up(value):
    """The smallest of 2, 4, 10, 20, 40, 100, ... at or above ``value``: a
    maximum whose half is a round number too."""
    step = 2
    while step < value:
        step = step * 5 // 2 if str(step).startswith('4') else step * 2
    return step
