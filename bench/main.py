"""The bench: every figure of issue 5 measured on one server, with one data set, in one run.

A phase that fails is recorded with its error and the run goes on with what
does not depend on it, so a broken phase still leaves every other figure.
"""
import argparse
import os
import platform
import subprocess
import sys
import time
import traceback

from bench import datagen, lag, migration, peers, profiling, report
from bench.commands import PROJECT_DIR, Project
from bench.couchclient import Server
from bench.server import embedded_server, sigterm_as_interrupt, temporary_workdir

DEFAULT_OUT = PROJECT_DIR / 'bench' / 'results' / 'latest.json'
MAIN_DB, SMALL_DB = 'bench', 'bench_small'
PEER_DBS = {'raw_view': 'peer_raw_view', 'raw_changes': 'peer_raw_changes', 'replicate': 'peer_replicate'}
COPY_LABELS = {
    'initial': '--initial (dump + load)',
    'raw_view': 'raw copy loop via by_doc_type view',
    'raw_changes': 'raw copy loop via _changes',
    'replicate': 'pouchdb _replicate with JS filter',
}


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='bench/run.py', description="Measure the doc type migration against its peers on the same "
        "data, in one run, on a pouchdb-server of its own; prints a table and writes JSON.")
    parser.add_argument('--docs', type=int, help="Docs in the source (default 100000; 10000 with --quick).")
    parser.add_argument('--lag-seconds', type=float, help="How long the writer runs during --continuous "
                        "(default 60; 15 with --quick).")
    parser.add_argument('--lag-rate', type=float, default=300, help="Writer's changes/s (default 300).")
    parser.add_argument('--rounds', type=int, help="Times each copy is measured, interleaved, best kept "
                        "(default 2; 1 with --quick).")
    parser.add_argument('--quick', action='store_true', help="A smoke run: 10k docs, 15 s of lag, 1 round.")
    parser.add_argument('--out', default=str(DEFAULT_OUT), help="Where the JSON goes (default %(default)s).")
    parser.add_argument('--profile', metavar='DIR', help="Also run --initial once more under py-spy "
                        "(not counted in the figures) and write its speedscope profile to DIR.")
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args(argv)
    args.docs = args.docs or (10_000 if args.quick else 100_000)
    args.lag_seconds = args.lag_seconds or (15 if args.quick else 60)
    args.rounds = args.rounds or (1 if args.quick else 2)
    return args


class Run:
    """Progress on stderr (a ten-minute run shows where it is), phase timings,
    and the errors of phases that failed."""

    def __init__(self):
        self.started = time.monotonic()
        self.started_at = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
        self.phases = {}
        self.errors = {}

    def elapsed(self):
        return round(time.monotonic() - self.started, 1)

    def phase(self, name, message, action):
        """``action()``'s result, or None when it failed (the error is kept)."""
        print(f"[{self.elapsed():6.0f}s] {message}", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            return action()
        except Exception as error:
            if _interrupted(error):
                raise  # Ctrl-C or SIGTERM that a cleanup step turned into another error
            self.errors[name] = f"{type(error).__name__}: {error}"
            print(f"         {name} FAILED:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            return None
        finally:
            self.phases[name] = round(time.monotonic() - started, 2)


def _interrupted(error):
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__context__
    return False


def migrating_doc_types():
    """The doc types of users_migration, from the registry itself."""
    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'settings')
    import django
    django.setup()
    from corehq.doctypemigrations.migrator_instances import users_migration
    return users_migration.all_doc_types


def main(argv=None):
    args = parse_args(argv)
    doc_types = migrating_doc_types()
    run = Run()
    with sigterm_as_interrupt(), temporary_workdir() as workdir, embedded_server(workdir) as couch:
        server = Server(couch.url)
        dataset, figures = run_all(args, server, workdir, doc_types, run)
        meta = describe(args, server, run)
    goals = report.targets(figures)
    print(report.table(meta, dataset, figures, goals))
    report.write_json(args.out, meta, dataset, figures, goals)
    print(f"\nwrote {args.out}")
    return 1 if run.errors else 0


def run_all(args, server, workdir, doc_types, run):
    big = Project(workdir, server.url, MAIN_DB, 'n')
    small = Project(workdir, server.url, SMALL_DB, 'n5')
    datasets = run.phase('generate', f"writing {args.docs} + {args.docs // 5} docs", lambda: (
        datagen.generate(server.db(MAIN_DB), args.docs, seed=args.seed),
        datagen.generate(server.db(SMALL_DB), args.docs // 5, seed=args.seed + 1)))
    if datasets is None:
        raise RuntimeError(f"could not write the data set: {run.errors['generate']}")
    dataset, dataset_small = datasets
    figures = {}
    for project, key, ds in ((big, 'setup_view', dataset), (small, 'setup_view_small', dataset_small)):
        figures[key] = run.phase(key, f"syncing design docs to {project.main_db}, indexing by_doc_type",
                                 lambda: _index_view(server, project, ds))
    figures.update(measure_copies(args, server, big, dataset, doc_types, run))
    initial_done = run.errors.get('initial') is None
    if args.profile and initial_done:
        figures['profile'] = run.phase('profile', f"profiling one more --initial into {args.profile}",
                                       lambda: profiling.profile_initial(big, server, args.profile))
    figures['initial_small'] = run.phase(
        'initial_small', f"--initial at N/5 ({dataset_small.docs} docs)",
        lambda: _initial_figure(small, server, dataset_small, f"--initial at N/5 ({dataset_small.docs} docs)"))
    if initial_done:
        figures['continuous'] = run.phase(
            'continuous', f"--continuous, writer at {args.lag_rate:.0f} changes/s for {args.lag_seconds:.0f} s",
            lambda: lag.measure_lag(big, server, args.lag_rate, args.lag_seconds).as_dict())
        figures['cleanup'] = run.phase('cleanup', "--cleanup --noinput --canary-wait 0",
                                       lambda: _cleanup_figure(big, server))
    for name, error in run.errors.items():
        figures.setdefault(name.split('#')[0], None)
    figures['errors'] = dict(run.errors)
    return dict(dataset.as_dict(), small=dataset_small.as_dict()), figures


def _index_view(server, project, dataset):
    project.fresh_state()
    project.sync_design_docs()
    seconds = migration.index_doc_type_view(server.db(project.main_db))
    return {'label': f"by_doc_type view index ({dataset.docs} docs)", 'seconds': seconds,
            'docs': dataset.docs, 'docs_per_s': dataset.docs / seconds}


def _initial_figure(project, server, dataset, label):
    sample = _initial(project, server)
    return report.copy_figure(label, [sample['seconds']], dataset.expected_in_target, sample['in_target'],
                              dataset.docs, rss=[sample['rss']])


def _cleanup_figure(project, server):
    """--cleanup with the by_doc_type index caught up first, and that catch-up
    timed on its own, as for --initial: on pouchdb-server the index lags by
    the --continuous phase's writes until a query, while CouchDB indexes in
    the background, so the catch-up is the writer's cost, not the cleanup's."""
    catch_up = migration.index_doc_type_view(server.db(project.main_db))
    result = migration.run_cleanup(project)
    return {'label': '--cleanup, deletes from the source', 'seconds': result.seconds,
            'deleted': result.count, 'deletes_per_s': result.count / result.seconds,
            'peak_rss_mb': result.peak_rss_mb, 'index_catch_up_s': catch_up}


def measure_copies(args, server, project, dataset, doc_types, run):
    """Each copy of the same source ``rounds`` times, in alternating order so a
    drifting machine does not favour whichever runs first; the best is kept."""
    source = server.db(project.main_db)
    ddocs = migration.design_docs(server.db(project.target_db))
    copies = {
        'initial': lambda: _initial(project, server),
        'raw_view': lambda: _peer(server, 'raw_view', lambda t: peers.copy_via_view(source, t, doc_types),
                                  ddocs),
        'raw_changes': lambda: _peer(server, 'raw_changes',
                                     lambda t: peers.copy_via_changes(source, t, doc_types), ddocs),
        'replicate': lambda: _peer(server, 'replicate',
                                   lambda t: peers.replicate(server, source, t, doc_types), ddocs),
    }
    samples = {name: [] for name in copies}
    for round_no in range(args.rounds):
        order = list(copies) if round_no % 2 == 0 else list(reversed(copies))
        if round_no == args.rounds - 1:
            # --continuous and --cleanup go on from the last --initial's state.
            order.remove('initial')
            order.append('initial')
        for name in order:
            sample = run.phase(f"{name}#{round_no + 1}", f"round {round_no + 1}: {name}", copies[name])
            if sample is None:
                run.errors.setdefault(name, run.errors[f"{name}#{round_no + 1}"])
            else:
                samples[name].append(sample)
    figures = {}
    for name, results in samples.items():
        if name in run.errors or not results:
            figures[name] = None
            continue
        figures[name] = report.copy_figure(
            COPY_LABELS[name], [r['seconds'] for r in results],
            dataset.expected_in_target, min(r['in_target'] for r in results), dataset.docs,
            rss=[r['rss'] for r in results] if name == 'initial' else None)
    return figures


def _initial(project, server):
    migration.prepare_fresh_run(project, server)
    result = migration.run_initial(project)
    return {'seconds': result.seconds, 'rss': result.peak_rss_mb,
            'in_target': migration.live_docs(server.db(project.target_db))}


def _peer(server, name, copy, design_docs):
    target = server.db(PEER_DBS[name])
    peers.prepare_target(target, design_docs)
    result = copy(target)
    in_target = migration.live_docs(target)
    target.delete()  # keep the server's working set to the databases still measured
    return {'seconds': result.seconds, 'in_target': in_target}


def describe(args, server, run):
    return {
        'started_at': run.started_at,
        'wall_seconds': run.elapsed(),
        'phases_s': run.phases,
        'docs': args.docs, 'rounds': args.rounds, 'lag_seconds': args.lag_seconds, 'lag_rate': args.lag_rate,
        'quick': args.quick, 'cpus': os.cpu_count(), 'python': platform.python_version(),
        'pouchdb_server': server.json('GET', '')['version'],
        'git_commit': _git('rev-parse', 'HEAD'),
        'core_modified_files': len(_git('status', '--porcelain', 'corehq').splitlines()),
    }


def _git(*args):
    try:
        return subprocess.run(['git', *args], cwd=PROJECT_DIR, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ''
