"""The printed table, the PASS/FAIL goals and the JSON file."""
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.profiling import format_summary

# Goals of issue 5 (targets to steer by, not test assertions).
INITIAL_VS_REPLICATOR = 1.5
INITIAL_VS_RAW = 0.8
LAG_P95_SECONDS = 2.0
RSS_LIMIT_MB = 150
RSS_GROWTH = 0.20
CLEANUP_DELETES_PER_S = 3000
# Issue 11: a link to a remote cluster, and a rate limit.
LINK_VS_DIRECT = 0.85
LINK_SERIAL_REFERENCE = 0.6     # what a client with one request at a time holds (a reference, not a goal)
LINK_VS_RAW = 1.3
LINK_VS_REPLICATOR = 3.0
RATE_LIMITED_VS_FREE = 0.5
# Issue 12: the scale run.
THROUGHPUT_DROP = 0.15
READER_SECONDS = 10.0
VERIFY_VS_INITIAL = 2.0   # issue 24
CLEANUP_VS_INITIAL = 1.5  # issue 24
COLD_VS_SELECTOR = 1.5    # issue 24


@dataclass
class Target:
    name: str
    value: str
    goal: str
    passed: object      # True, False, or None for a figure shown for reference

    def as_dict(self):
        return dict(self.__dict__)

    @property
    def result(self):
        return 'info' if self.passed is None else 'PASS' if self.passed else 'FAIL'


def copy_figure(label, samples, dataset, base, index_seconds=None):
    """The median of the rounds, with the spread (max - min over the median)
    and every sample kept.

    ``dataset.expected_in_target`` is what every copy must end with (the live
    docs of migrating types), so the docs/s of all copies compare like for
    like. ``index_seconds`` is the by_doc_type index build the copy needs
    first, for the figures that count it.
    """
    seconds = [s['seconds'] for s in samples]
    median = statistics.median(seconds)
    docs = dataset.expected_in_target
    figure = {'label': label, 'seconds': median, 'samples_s': seconds,
              'spread': (max(seconds) - min(seconds)) / median, 'docs': docs,
              'source_docs': dataset.docs, 'docs_per_s': docs / median,
              'docs_in_target': min(s['in_target'] for s in samples), 'base': base,
              'index_s': index_seconds,
              'docs_per_s_with_index': docs / (median + (index_seconds or 0))}
    rss = [s['rss'] for s in samples if s.get('rss') is not None]
    if rss:
        figure['peak_rss_mb'] = max(rss)
        figure['samples_rss_mb'] = rss
    dumps = [s['dump_bytes'] for s in samples if s.get('dump_bytes') is not None]
    if dumps:
        figure['dump_bytes'] = statistics.median(dumps)
        figure['dump_bytes_per_doc'] = figure['dump_bytes'] / docs
    for key, name in (('server_main_cpu_s', 'server_main_cpu'), ('server_cpu_s', 'server_cpu'),
                      ('client_cpu_s', 'client_cpu'), ('machine_busy_s', 'machine_busy')):
        shares = [s[key] / s['seconds'] for s in samples if s.get(key) is not None]
        if shares:
            figure[name] = statistics.median(shares)   # CPU seconds per second of wall time
    links = [s['link'] for s in samples if s.get('link')]
    if links:
        figure['link'] = links
        figure['max_in_flight'] = max(link.get('max_in_flight', 0) for link in links)
        figure['rate_limited'] = [link.get('rate_limited', 0) for link in links]
        figure['requests'] = [link.get('requests', 0) for link in links]
        proxy = [link['cpu_s'] / s['seconds'] for s, link in zip(samples, links) if link.get('cpu_s')]
        if proxy:
            figure['proxy_cpu'] = statistics.median(proxy)
    return figure


def _ratio(figures, a, b, with_index=False):
    key = 'docs_per_s_with_index' if with_index else 'docs_per_s'
    return figures[a][key] / figures[b][key]


def targets(figures, args=None):
    goals = []

    def goal(name, goal_text, needs, measure):
        """``measure(*figures)`` -> (value text, passed). A figure this run does
        not measure (absent) skips the goal; one that failed (None) is 'n/a' and FAIL."""
        if any(key not in figures for key in needs):
            return
        found = [figures.get(key) for key in needs]
        if any(f is None for f in found):
            goals.append(Target(name, 'n/a (phase failed)', goal_text, False))
        else:
            value, passed = measure(*found)
            goals.append(Target(name, value, goal_text, passed))

    def ratio_goal(name, a, b, least, with_index=False, reference=False):
        """A goal is set on the copies themselves; the same ratio with the
        by_doc_type index build included (built once, at deploy, by the
        preindex step) is shown for reference."""
        def measure(fa, fb):
            value = _ratio(figures, a, b, with_index)
            return f"{value:.2f}x", None if reference or with_index else value >= least
        target = 'reference' if with_index else f"{'~' if reference else '>= '}{least}x"
        goal(name, target, [a, b], measure)

    # Issue 5's figures, each without and with the by_doc_type index build it depends on.
    for with_index, suffix in ((False, ''), (True, ', incl. index')):
        ratio_goal(f"initial vs in-server filtered _replicate{suffix}", 'initial', 'replicate',
                   INITIAL_VS_REPLICATOR, with_index)
        ratio_goal(f"initial vs _replicate with Mango selector{suffix}", 'initial', 'replicate_mango',
                   INITIAL_VS_REPLICATOR, with_index, reference=True)

        def vs_raw(initial, raw_view, raw_changes, with_index=with_index):
            key = 'docs_per_s_with_index' if with_index else 'docs_per_s'
            ratio = initial[key] / max(raw_view[key], raw_changes[key])
            return f"{ratio:.2f}x", None if with_index else ratio >= INITIAL_VS_RAW
        target = 'reference' if with_index else f">= {INITIAL_VS_RAW}x"
        goal(f"initial vs faster raw copy loop{suffix}", target, ['initial', 'raw_view', 'raw_changes'],
             vs_raw)

    # Issue 24: the first migration of a database without the by_doc_type view.
    ratio_goal("initial cold start (no view) vs _replicate with Mango selector", 'initial_cold',
               'replicate_mango', COLD_VS_SELECTOR)

    # The server's own minimum: no goal yet, the figure to steer by on CouchDB.
    alone = ['initial', 'read_alone', 'write_alone']
    goal("initial vs the slower of read-alone, write-alone", 'reference', alone,
         lambda i, r, w: (f"{server_minimum(i, r, w)['vs_max']:.2f}x", None))
    goal("initial vs read-alone + write-alone", 'reference', alone,
         lambda i, r, w: (f"{server_minimum(i, r, w)['vs_sum']:.2f}x", None))

    # Issue 24: the phases after the copy, against the copy itself (the same data, one run).
    def phase_vs_initial(most):
        def measure(phase, initial):
            ratio = phase['seconds'] / initial['seconds']
            return f"{ratio:.2f}x ({phase['seconds']:.1f} vs {initial['seconds']:.1f} s)", ratio <= most
        return measure
    goal("--verify time vs --initial", f"<= {VERIFY_VS_INITIAL:g}x", ['verify', 'initial'],
         phase_vs_initial(VERIFY_VS_INITIAL))
    goal("--cleanup time vs --initial (index current, --canary-wait 0)", f"<= {CLEANUP_VS_INITIAL:g}x",
         ['cleanup', 'initial'], lambda c, i: phase_vs_initial(CLEANUP_VS_INITIAL)(c['bare'], i))
    goal("--cleanup time vs --initial (as run: canary wait, index catch-up)", 'reference',
         ['cleanup', 'initial'], lambda c, i: (phase_vs_initial(CLEANUP_VS_INITIAL)(c['full'], i)[0], None))

    def lag(continuous):
        text = f"{continuous['p95']:.3f} s"
        if continuous['unobserved']:
            text += f" ({continuous['unobserved']} never arrived)"
        return text, continuous['p95'] <= LAG_P95_SECONDS and not continuous['unobserved']

    rate = (figures.get('continuous') or {}).get('achieved_rate')
    goal("continuous lag p95" + (f" at {rate:.0f} changes/s" if rate else ''), f"<= {LAG_P95_SECONDS} s",
         ['continuous'], lag)
    docs = (figures.get('initial') or {}).get('source_docs', 'N')
    small_docs = (figures.get('initial_small') or {}).get('source_docs', 'N_small')
    goal(f"initial peak RSS at {docs} docs", f"<= {RSS_LIMIT_MB} MB", ['initial'],
         lambda i: (f"{i['peak_rss_mb']:.0f} MB", i['peak_rss_mb'] <= RSS_LIMIT_MB))

    def rss_growth(initial, small):
        growth = initial['peak_rss_mb'] / small['peak_rss_mb'] - 1
        return (f"{growth:+.0%} ({initial['peak_rss_mb']:.0f} vs {small['peak_rss_mb']:.0f} MB)",
                abs(growth) <= RSS_GROWTH)
    goal(f"initial peak RSS, {docs} vs {small_docs} docs", f"within {RSS_GROWTH:.0%}",
         ['initial', 'initial_small'], rss_growth)
    # The goal is on the deletions; the canary's wait (a fixed pause) and the
    # index catch-up (the --continuous phases' writes) are shown for reference.
    goal('cleanup deletes/s, no canary wait, index current', f">= {CLEANUP_DELETES_PER_S}", ['cleanup'],
         lambda c: (f"{c['bare']['deletes_per_s']:.0f}", c['bare']['deletes_per_s'] >= CLEANUP_DELETES_PER_S))
    goal('cleanup deletes/s, default canary wait + catch-up', 'reference', ['cleanup'],
         lambda c: (f"{c['full']['deletes_per_s']:.0f}", None))

    # Issue 11: the link and the rate limit.
    link = f"{args.link_ms:g} ms link" if args else 'link'
    ratio_goal(f"initial via {link} vs direct", 'link_initial', 'initial', LINK_VS_DIRECT)
    ratio_goal(f"initial --workers 1 via {link} vs direct", 'link_initial_w1', 'initial',
               LINK_SERIAL_REFERENCE, reference=True)
    ratio_goal(f"initial vs serial raw loop, both via {link}", 'link_initial', 'link_raw', LINK_VS_RAW)
    ratio_goal(f"initial vs _replicate, both via {link}", 'link_initial', 'link_replicate',
               LINK_VS_REPLICATOR)
    ratio_goal(f"initial vs _replicate via {link}, incl. index", 'link_initial', 'link_replicate',
               LINK_VS_REPLICATOR, with_index=True)
    goal(f"continuous lag p95 via {link}", f"<= {LAG_P95_SECONDS} s", ['link_lag'], lag)
    goal("continuous lag p95 after quiet" + (f" ({args.quiet_seconds:.0f} s)" if args else ''),
         f"<= {LAG_P95_SECONDS} s", ['quiet_lag'], lag)
    share = f"{args.rate_limit:.0%}" if args else 'some'

    def every_phase(result):
        done = sum(1 for step in result['steps'] if step['ok'])
        failed = [step['step'] for step in result['steps'] if not step['ok']]
        text = f"{done} steps ok" + (f", {failed[0]} failed" if failed else '')
        return text, result['completed']
    goal(f"every phase completes with {share} 429s", 'all', ['rate_limited_phases'], every_phase)
    ratio_goal(f"initial with {share} 429s vs without (same proxy)", 'rl_initial', 'proxy_initial',
               RATE_LIMITED_VS_FREE)
    ratio_goal(f"initial with {share} 429s vs direct", 'rl_initial', 'initial', RATE_LIMITED_VS_FREE)

    # Issue 12: throughput flat in N, readers that answer at once, the dump's size.
    def flat(initial, small):
        ratio = initial['docs_per_s'] / small['docs_per_s']
        return (f"{ratio:.2f}x ({initial['docs_per_s']:.0f} vs {small['docs_per_s']:.0f}/s)",
                ratio >= 1 - THROUGHPUT_DROP)
    goal(f"initial docs/s, {docs} vs {small_docs} docs", f">= {1 - THROUGHPUT_DROP:.2f}x",
         ['initial', 'initial_small'], flat)
    goal(f"raw view loop docs/s, {docs} vs {small_docs} (server)", 'reference',
         ['raw_view', 'raw_view_small'],
         lambda big, small: (f"{big['docs_per_s'] / small['docs_per_s']:.2f}x", None))
    # The first --stats builds the target's index (the preindex step builds it
    # at deploy in production): shown for reference.
    goal(f"--stats, first (target index cold) at {docs} docs", 'reference', ['readers'],
         lambda r: (f"{r['stats_first']['seconds']:.1f} s", None))
    for key, name in (('stats', '--stats, index current'), ('status', '--status'),
                      ('status_json', '--status --json')):
        goal(f"{name} at {docs} docs", f"<= {READER_SECONDS:g} s", ['readers'],
             lambda r, key=key: (f"{r[key]['seconds']:.1f} s", r[key]['seconds'] <= READER_SECONDS))
    goal('dump size per doc', 'reference', ['initial'],
         lambda i: ((f"{i['dump_bytes_per_doc']:.0f} B" if i.get('dump_bytes') else 'n/a'), None))

    # Issue 17: the flip gate verifies a faithful copy of real-shaped data clean.
    goal(f"--verify at {docs} docs (after --continuous), its exit", 'exit 0', ['verify'],
         lambda v: (f"exit {v['exit_code']}", v['exit_code'] == 0))

    # Issue 19: moving a pillow against processing every doc again (no target given: shown for reference).
    pillow_docs = (figures.get('pillow_move') or {}).get('source_docs', docs)
    goal(f"pillow reprocessing at {pillow_docs} docs (rebuild, source)", 'reference', ['pillow_move'],
         lambda p: (f"{p['reprocess']['seconds']:.1f} s, {p['reprocess']['docs_per_s']:.0f} changes/s", None))
    goal(f"move_pillow_checkpoint at {pillow_docs} docs", 'reference', ['pillow_move'],
         lambda p: (f"{p['move']['seconds']:.1f} s", None))
    goal("pillow reprocessing vs move (time)", 'reference', ['pillow_move'],
         lambda p: (f"{p['reprocess_vs_move']:.1f}x", None))
    return goals


def server_minimum(initial, read, write):
    """--initial's throughput against the server's floor: the slower of reading
    and writing alone (a copy overlapping them cannot beat it), and their sum
    (a copy that reads everything, then writes it, cannot beat that)."""
    slower = max(read['seconds'], write['seconds'])
    both = read['seconds'] + write['seconds']
    return {'read_s': read['seconds'], 'write_s': write['seconds'], 'initial_s': initial['seconds'],
            'vs_max': slower / initial['seconds'], 'vs_sum': both / initial['seconds']}


def _fmt(value, spec):
    """``spec`` is a width and format, e.g. '8.1f'; a missing value keeps the width."""
    width = int(spec.split('.')[0])
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ' ' * (width - 1) + '-'
    return format(value, spec)


def _rss(figure):
    return f" ({figure['peak_rss_mb']:.0f} MB)" if figure.get('peak_rss_mb') else ''


def _pct(value, width):
    return f"{value:{width}.0%}" if value is not None else ' ' * (width - 1) + '-'


SETUP_ROWS = ('setup_view', 'setup_view_small')
COPY_ROWS = ('initial', 'initial_small', 'initial_w1', 'initial_cold', 'read_alone', 'write_alone',
             'raw_view', 'raw_view_small', 'raw_changes', 'replicate', 'replicate_mango', 'proxy_initial',
             'link_initial', 'link_initial_w1', 'link_raw', 'link_replicate', 'rl_initial')
LABEL = 46


def table(meta, dataset, figures, goals):
    small = dataset.get('small') or {}
    server = meta.get('server') or f"pouchdb-server {meta.get('pouchdb_server')}"   # older results say this
    lines = [
        f"Doc type migration bench: {dataset['docs']} docs ({dataset['migrating']} of migrating types, "
        f"{dataset['expected_in_target']} live to copy; {dataset['conflicted']} conflicted, "
        f"{dataset['deleted']} deleted, {dataset['with_attachments']} with attachments)"
        + (f"; N_small {small.get('docs')} docs ({small.get('expected_in_target')} live to copy)"
           if small.get('docs') else ''),
        f"{server}, {meta['cpus']} CPUs, {meta['rounds']} round(s) in a "
        f"rotating order (median; spread = (max - min) / median), "
        f"bench wall time {meta['wall_seconds']:.0f} s"
        + (", --only-scale" if meta.get('only_scale') else ''),
        "docs/s = live docs of migrating types in the target per second of wall time; x = how many times "
        "faster the row's base copy is (initial for direct copies, the link's --initial for link copies, "
        "the no-delay proxy's for 429s); +index = with the by_doc_type index build the copy depends on; "
        "flight = most requests open at once through the proxy; CPU seconds per wall second of the "
        "server's JavaScript thread (srv JS), of all its threads (srv), of the copying client, of "
        "the proxy, and of the whole machine with everyone's processes (all; 200% = both cores busy); "
        "on CouchDB srv JS is its couchjs processes and srv the Erlang VM with them",
        '',
    ]
    header = (f"{'figure':<{LABEL}}{'time s':>8}{'spread':>7}{'docs/s':>8}{'x':>7}{'+index s':>9}"
              f"{'docs/s':>8}{'x':>7}{'RSS MB':>7}{'flight':>7}{'srv JS':>7}{'srv':>6}{'client':>7}"
              f"{'proxy':>6}{'all':>6}  check")
    lines += [header, '-' * len(header)]
    for key in SETUP_ROWS:
        if key in figures:
            f = figures[key]
            lines.append(f"{key:<{LABEL}}  ERROR" if f is None else
                         f"{f['label']:<{LABEL}}{f['seconds']:8.1f}{'':>7}{f['docs_per_s']:8.0f}")
    for key in COPY_ROWS:
        if key not in figures:
            continue
        f = figures[key]
        if f is None:
            lines.append(f"{key:<{LABEL}}  ERROR {figures.get('errors', {}).get(key, '')[:80]}")
            continue
        base = figures.get(f.get('base'))
        x = xi = ''
        if base:
            x = f"{base['docs_per_s'] / f['docs_per_s']:.2f}x"
            xi = f"{base['docs_per_s_with_index'] / f['docs_per_s_with_index']:.2f}x"
        check = 'ok' if f['docs_in_target'] == f['docs'] else f"target has {f['docs_in_target']}!"
        if f.get('requests'):
            requests = statistics.median(f['requests'])
            if f.get('rate_limited') and any(f['rate_limited']):
                check += f", {statistics.median(f['rate_limited']):.0f} of {requests:.0f} requests 429"
            else:
                check += f", {requests:.0f} requests"
        with_index = f['seconds'] + (f['index_s'] or 0)
        lines.append(f"{f['label'][:LABEL]:<{LABEL}}{f['seconds']:8.1f}{f['spread']:7.0%}"
                     f"{f['docs_per_s']:8.0f}{x:>7}{with_index:9.1f}{f['docs_per_s_with_index']:8.0f}{xi:>7}"
                     f"{_fmt(f.get('peak_rss_mb'), '7.0f')}{_fmt(f.get('max_in_flight'), '7.0f')}"
                     f"{_pct(f.get('server_main_cpu'), 7)}{_pct(f.get('server_cpu'), 6)}"
                     f"{_pct(f.get('client_cpu'), 7)}{_pct(f.get('proxy_cpu'), 6)}"
                     f"{_pct(f.get('machine_busy'), 6)}  {check}")
    initial = figures.get('initial') or {}
    small_initial = figures.get('initial_small') or {}
    if initial.get('dump_bytes'):
        lines.append(f"dump file (gzip): {initial['dump_bytes'] / 1e6:.1f} MB for {initial['docs']} docs, "
                     f"{initial['dump_bytes_per_doc']:.0f} B/doc = "
                     f"{initial['dump_bytes_per_doc']:.0f} MB per million docs"
                     + (f" (at N_small {small_initial['dump_bytes_per_doc']:.0f} B/doc)"
                        if small_initial.get('dump_bytes') else ''))
    if initial and figures.get('read_alone') and figures.get('write_alone'):
        floor = server_minimum(initial, figures['read_alone'], figures['write_alone'])
        lines.append(f"server minimum: read-alone {floor['read_s']:.1f} s, write-alone "
                     f"{floor['write_s']:.1f} s; --initial {floor['initial_s']:.1f} s = "
                     f"{1 / floor['vs_max']:.2f}x the slower one's time, "
                     f"{1 / floor['vs_sum']:.2f}x their sum")
    readers = figures.get('readers')
    if readers:
        lines.append(f"read-only commands at N ({initial.get('source_docs')} docs): " + ', '.join(
            f"{name} {readers[key]['seconds']:.1f} s" + _rss(readers[key]) for key, name in (
                ('stats_first', '--stats (first, target index cold)'), ('stats', '--stats again'),
                ('status', '--status'), ('status_json', '--status --json'))))
        queries = readers.get('server_queries')
        if queries:
            parts = [f"{role} {queries[f'{role}_lookup_s']:.2f} s for one row, "
                     f"{queries[f'{role}_reduce_s']:.1f} s for the group_level=1 reduce"
                     for role in ('source', 'target')]
            lines.append("  the by_doc_type queries behind --stats, asked of the server directly "
                         "(index current): " + ', '.join(parts))
    c = figures.get('cleanup')
    if c:
        lines.append('')
        for key in ('bare', 'full'):
            r = c[key]
            cpu = ', '.join(f"{name} {r[key]:.0%}" for key, name in (
                ('server_main_cpu', 'srv JS'), ('server_cpu', 'srv'), ('client_cpu', 'client'),
                ('machine_busy', 'all')) if r.get(key) is not None)
            lines.append(f"{r['label']:<{LABEL + 8}}{r['seconds']:6.1f} s {r['deletes_per_s']:6.0f} deletes/s"
                         f"{r['peak_rss_mb']:5.0f} MB  {r['deleted']} deleted"
                         + (f"; CPU {cpu}" if cpu else ''))
    for key, title in (('continuous', '--continuous, writer at {rate:.0f} changes/s for {seconds:.0f} s'),
                       ('link_lag', '--continuous via the link, writer at {rate:.0f} changes/s for '
                                    '{seconds:.0f} s'),
                       ('quiet_lag',
                        '--continuous after {quiet} s of quiet, then {writes} writes a second apart')):
        lag = figures.get(key)
        if lag:
            lines += ['', title.format(rate=lag['achieved_rate'], seconds=lag['seconds'],
                                       quiet=f"{meta.get('quiet_seconds', 0):.0f}",
                                       writes=lag['measured_writes'])
                      + f": lag p50 {lag['p50']:.3f} s, p95 {lag['p95']:.3f} s, max {lag['max']:.3f} s over "
                      f"{lag['measured_writes']} migrating writes ({lag['unobserved']} never arrived); "
                      f"follower peak RSS {lag['follower_peak_rss_mb']:.0f} MB"]
    moved = figures.get('pillow_move')
    if moved:
        r, m, a = moved['reprocess'], moved['move'], moved['after_move']
        reset = m['reset_would_process']
        lines += ['', f"Commit 4 at {moved.get('source_docs', 'N')} docs: run_pillow user_index --rebuild on "
                      f"the source processed "
                      f"{r['changes']} changes in {r['seconds']:.1f} s ({r['docs_per_s']:.0f} changes/s, "
                      f"{r['peak_rss_mb']:.0f} MB); after the flip, move_pillow_checkpoint took "
                      f"{m['seconds']:.1f} s ({moved['reprocess_vs_move']:.1f}x less), then the pillow "
                      f"caught up on the target with {a['changes']} changes in {a['seconds']:.1f} s; a reset "
                      f"on the target would process {reset} (~{reset / r['docs_per_s']:.1f} s at the "
                      f"measured rate). "
                      f"Each time is a whole process, Django's start included."]
    verified = figures.get('verify')
    if verified:
        lines += ['', f"--verify at N after --initial and --continuous: exit {verified['exit_code']} in "
                      f"{verified['seconds']:.1f} s"
                      + _rss(verified)
                      + f": {verified['line']}"
                  + (f" ({verified['error']})" if verified.get('error') else '')]
    limited = figures.get('rate_limited_phases')
    if limited:
        lines += ['', f"every phase at N_small through a proxy answering {limited['rate_limit']:.0%} "
                      f"of requests 429:"]
        for step in limited['steps']:
            lines.append(f"  {step['step']:<34}{'ok' if step['ok'] else 'FAILED':<8}"
                         f"{step['seconds']:7.1f} s  "
                         f"{step['rate_limited']} of {step['requests']} requests answered 429")
    lines += ['', f"{'goal':<58}{'value':>28}  {'target':<11}result"]
    for goal in goals:
        lines.append(f"{goal.name:<58}{goal.value:>28}  {goal.goal:<11}{goal.result}")
    if figures.get('profile'):
        lines += ['', 'one more --initial under py-spy (not in the figures above):',
                  format_summary(figures['profile'])]
    if figures.get('errors'):
        lines += ['', 'phases that failed:'] + [f"  {name}: {error[:300]}"
                                                for name, error in figures['errors'].items()]
    return '\n'.join(lines)


def write_json(path, meta, dataset, figures, goals):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {'meta': meta, 'dataset': dataset, 'figures': figures,
                'targets': [goal.as_dict() for goal in goals]}
    path.write_text(json.dumps(_no_nan(document), indent=2, default=str) + '\n')


def _no_nan(value):
    """NaN (a figure that could not be measured) becomes null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    return value


def main(argv=None):
    """``python -m bench.report RESULTS.json``: print a results file's table
    again, with the goals as this version of the bench judges them."""
    import sys
    from types import SimpleNamespace
    path = (argv or sys.argv[1:])[0]
    document = json.loads(Path(path).read_text())
    meta, figures = document['meta'], document['figures']
    args = SimpleNamespace(link_ms=meta.get('link_ms', 50), quiet_seconds=meta.get('quiet_seconds', 0),
                           rate_limit=meta.get('rate_limit', 0.15))
    print(table(meta, document['dataset'], figures, targets(figures, args)))


if __name__ == '__main__':
    main()
