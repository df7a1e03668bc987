"""The printed table, the PASS/FAIL goals and the JSON file."""
import json
import math
from dataclasses import dataclass
from pathlib import Path

# Goals of issue 5 (targets to steer by, not test assertions).
INITIAL_VS_REPLICATOR = 1.5
INITIAL_VS_RAW = 0.8
LAG_P95_SECONDS = 2.0
RSS_LIMIT_MB = 150
RSS_GROWTH = 0.20
CLEANUP_DELETES_PER_S = 3000


@dataclass
class Target:
    name: str
    value: str
    goal: str
    passed: bool

    def as_dict(self):
        return dict(self.__dict__)


def copy_figure(label, samples, docs, in_target, source_docs, rss=None):
    """The best of the rounds (least disturbed by the machine's noise), with every sample kept.

    ``docs`` is what every copy must end with (the live docs of migrating
    types), so the docs/s of all copies compare like for like.
    """
    best = min(samples)
    figure = {'label': label, 'seconds': best, 'samples_s': samples, 'docs': docs,
              'source_docs': source_docs, 'docs_per_s': docs / best, 'docs_in_target': in_target}
    if rss is not None:
        figure['peak_rss_mb'] = max(rss)
        figure['samples_rss_mb'] = rss
    return figure


def targets(figures):
    goals = []

    def goal(name, goal_text, needs, measure):
        """``measure(*figures)`` -> (value text, passed); 'n/a' and FAIL when a figure is missing."""
        found = [figures.get(key) for key in needs]
        if any(f is None for f in found):
            goals.append(Target(name, 'n/a (phase failed)', goal_text, False))
        else:
            value, passed = measure(*found)
            goals.append(Target(name, value, goal_text, passed))

    def vs_replicator(initial, replicate):
        ratio = initial['docs_per_s'] / replicate['docs_per_s']
        return f"{ratio:.2f}x", ratio >= INITIAL_VS_REPLICATOR

    def vs_raw(initial, raw_view, raw_changes):
        ratio = initial['docs_per_s'] / max(raw_view['docs_per_s'], raw_changes['docs_per_s'])
        return f"{ratio:.2f}x", ratio >= INITIAL_VS_RAW

    def lag(continuous):
        text = f"{continuous['p95']:.3f} s"
        if continuous['unobserved']:
            text += f" ({continuous['unobserved']} never arrived)"
        return text, continuous['p95'] <= LAG_P95_SECONDS and not continuous['unobserved']

    def rss(initial):
        return f"{initial['peak_rss_mb']:.0f} MB", initial['peak_rss_mb'] <= RSS_LIMIT_MB

    def rss_growth(initial, small):
        growth = initial['peak_rss_mb'] / small['peak_rss_mb'] - 1
        return (f"{growth:+.0%} ({initial['peak_rss_mb']:.0f} vs {small['peak_rss_mb']:.0f} MB)",
                abs(growth) <= RSS_GROWTH)

    def cleanup(result):
        return f"{result['deletes_per_s']:.0f}", result['deletes_per_s'] >= CLEANUP_DELETES_PER_S

    rate = (figures.get('continuous') or {}).get('achieved_rate')
    docs = (figures.get('initial') or {}).get('source_docs', 'N')
    goal('initial vs in-server filtered _replicate', f">= {INITIAL_VS_REPLICATOR}x",
         ['initial', 'replicate'], vs_replicator)
    goal('initial vs faster raw copy loop', f">= {INITIAL_VS_RAW}x",
         ['initial', 'raw_view', 'raw_changes'], vs_raw)
    goal("continuous lag p95" + (f" at {rate:.0f} changes/s" if rate else ''), f"<= {LAG_P95_SECONDS} s",
         ['continuous'], lag)
    goal(f"initial peak RSS at {docs} docs", f"<= {RSS_LIMIT_MB} MB", ['initial'], rss)
    goal('initial peak RSS, N vs N/5', f"within {RSS_GROWTH:.0%}", ['initial', 'initial_small'], rss_growth)
    goal('cleanup deletes/s', f">= {CLEANUP_DELETES_PER_S}", ['cleanup'], cleanup)
    return goals


def _fmt(value, spec):
    """``spec`` is a width and format, e.g. '8.1f'; a missing value keeps the width."""
    width = int(spec.split('.')[0])
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ' ' * (width - 1) + '-'
    return format(value, spec)


COPY_ROWS = ('setup_view', 'setup_view_small', 'initial', 'initial_small', 'raw_view', 'raw_changes',
             'replicate')
RELATIVE = ('initial', 'raw_view', 'raw_changes', 'replicate')


def table(meta, dataset, figures, goals):
    lines = [
        f"Doc type migration bench: {dataset['docs']} docs ({dataset['migrating']} of migrating types, "
        f"{dataset['expected_in_target']} live to copy; {dataset['conflicted']} conflicted, "
        f"{dataset['deleted']} deleted, {dataset['with_attachments']} with attachments)",
        f"pouchdb-server {meta['pouchdb_server']}, {meta['cpus']} CPUs, {meta['rounds']} round(s) (best kept), "
        f"bench wall time {meta['wall_seconds']:.0f} s",
        "docs/s = live docs of migrating types in the target per second of wall time; "
        "initial/x = how many times faster --initial is",
        '',
    ]
    initial = (figures.get('initial') or {}).get('docs_per_s')
    header = f"{'figure':<58}{'time s':>8}{'docs/s':>9}{'initial/x':>11}{'RSS MB':>8}  check"
    lines += [header, '-' * len(header)]
    for key in COPY_ROWS:
        f = figures.get(key)
        if f is None:
            lines.append(f"{key:<58}  ERROR {figures.get('errors', {}).get(key, '')[:80]}")
            continue
        check = ''
        if 'docs_in_target' in f:
            check = 'ok' if f['docs_in_target'] == f['docs'] else f"target has {f['docs_in_target']}!"
        relative = f"{initial / f['docs_per_s']:.2f}x" if key in RELATIVE and initial else ''
        lines.append(f"{f['label']:<58}{_fmt(f['seconds'], '8.1f')}{_fmt(f['docs_per_s'], '9.0f')}"
                     f"{relative:>11}{_fmt(f.get('peak_rss_mb'), '8.0f')}  {check}")
    c = figures.get('cleanup')
    if c:
        lines.append(f"{'by_doc_type index catch-up before --cleanup':<58}"
                     f"{_fmt(c.get('index_catch_up_s'), '8.1f')}")
        lines.append(f"{c['label']:<58}{c['seconds']:8.1f}{c['deletes_per_s']:9.0f}{'':>11}"
                     f"{c['peak_rss_mb']:8.0f}  {c['deleted']} deleted (deletes/s)")
    lag = figures.get('continuous')
    if lag:
        lines += ['', f"--continuous, writer at {lag['achieved_rate']:.0f} changes/s for {lag['seconds']:.0f} s: "
                      f"lag p50 {lag['p50']:.3f} s, p95 {lag['p95']:.3f} s, max {lag['max']:.3f} s over "
                      f"{lag['measured_writes']} migrating writes ({lag['unobserved']} never arrived); "
                      f"follower peak RSS {lag['follower_peak_rss_mb']:.0f} MB"]
    lines += ['', f"{'goal':<46}{'value':>26}  {'target':<11}result"]
    for goal in goals:
        lines.append(f"{goal.name:<46}{goal.value:>26}  {goal.goal:<11}{'PASS' if goal.passed else 'FAIL'}")
    if figures.get('profile'):
        from bench.profiling import format_summary
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
    path.write_text(json.dumps(_no_nan(document), indent=2) + '\n')


def _no_nan(value):
    """NaN (a figure that could not be measured) becomes null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    return value
