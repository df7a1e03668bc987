"""The bench: every figure of issues 5, 11 and 12 measured on one server, in one run.

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
from dataclasses import dataclass
from typing import Callable, Optional

from bench import datagen, lag, migration, minimum, peers, pillows, profiling, remote, report
from bench.commands import PROJECT_DIR, Project
from bench.couchclient import Server
from bench.server import LAUNCHER, bench_server, client_cpu, cpu_meter, sigterm_as_interrupt, \
    temporary_workdir, watch_cpu_of

DEFAULT_OUT = PROJECT_DIR / 'bench' / 'results' / 'latest.json'
MAIN_DB, SMALL_DB = 'bench', 'bench_small'
COLD_DB = f"{MAIN_DB}_cold"  # the main data set without the by_doc_type view
CLEANUP_DB = f"{MAIN_DB}_copy"  # the main data set again, migrated, for a --cleanup of its own
PEER_DBS = {'raw_view': 'peer_raw_view', 'raw_view_small': 'peer_raw_view_small',
            'raw_changes': 'peer_raw_changes', 'replicate': 'peer_replicate',
            'replicate_mango': 'peer_replicate_mango', 'write_alone': 'peer_write_alone'}
# The server's minimum and the Mango replication: measured on pouchdb-server
# only when named with --only (its default run stays what it was).
NOT_BY_DEFAULT_ON_POUCHDB = {'read_alone', 'write_alone', 'replicate_mango', 'initial_cold'}
# What a run on CouchDB (--server) measures unless --only says otherwise: the
# copy against the server's own minimum and its own replicator, then every
# phase's time and peak RSS on the data the last --initial left.
COUCHDB_DEFAULT = {'initial', 'initial_cold', 'read_alone', 'write_alone', 'replicate', 'replicate_mango',
                   'readers', 'verify', 'cleanup'}
# Figures that need the smaller data set: it is written only for them.
NEEDS_SMALL = {'initial_small', 'raw_view_small', 'rate_limited_phases'}


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='bench/run.py', description="Measure the doc type migration against its peers on the same "
        "data, in one run, on a pouchdb-server of its own or on a CouchDB (--server); prints a table and "
        "writes JSON.")
    parser.add_argument('--server', metavar='URL', help="Measure on this CouchDB (an admin url, "
                        "http://USER:PASSWORD@HOST:PORT; its password is never printed; the bench's "
                        f"databases on it are overwritten), or '{LAUNCHER}': Apache CouchDB from "
                        "../shared/couchdb, one node started for the run and stopped at its end. "
                        "On CouchDB the default figures are " + ','.join(sorted(COUCHDB_DEFAULT))
                        + " (--only names others). Default: a pouchdb-server of the bench's own.")
    parser.add_argument('--docs', type=int, help="Docs in the source (default 100000; 10000 with --quick).")
    parser.add_argument('--small-docs', type=int, help="Docs in the smaller data set that throughput and "
                        "peak RSS at N are compared with (default N/5).")
    parser.add_argument('--lag-seconds', type=float, help="How long the writer runs during --continuous "
                        "(default 60; 10 with --quick).")
    parser.add_argument('--lag-rate', type=float, default=300, help="Writer's changes/s (default 300).")
    parser.add_argument('--quiet-seconds', type=float, help="How long --continuous sits caught up with "
                        "nothing to do before the quiet-then-write lag's writes (default 120; 20 with "
                        "--quick).")
    parser.add_argument('--link-ms', type=float, default=50, help="Delay per request of the simulated link "
                        "to a remote cluster (default %(default)s ms).")
    parser.add_argument('--rate-limit', type=float, default=0.15, help="Share of requests answered 429 "
                        "in the rate-limited runs (default %(default)s).")
    parser.add_argument('--rounds', type=int, help="Times each copy is measured, in a rotating order; "
                        "the median is kept (default 3; 1 with --quick).")
    parser.add_argument('--only-scale', action='store_true', help="Only what issue 12's scale figures need: "
                        "--initial and the raw view loop at N and at --small-docs, the dump size, --stats "
                        "and --status at N. Skips _replicate, the _changes loop, the link and 429 runs, "
                        "--continuous and --cleanup. For `--docs 1000000`.")
    parser.add_argument('--only', type=lambda text: set(text.split(',')), metavar='NAMES',
                        help="Measure only these figures (comma-separated keys of the JSON's figures: "
                        "copies such as initial,proxy_initial,rl_initial,link_initial,link_raw, and "
                        "readers, rate_limited_phases, continuous, link_lag, quiet_lag, verify, pillow_move, "
                        "cleanup). "
                        "For working on one figure; a ratio needs both of its figures named.")
    parser.add_argument('--quick', action='store_true', help="A smoke run: 10k docs, 1 round, 10 s of "
                        "lag, 20 s of quiet then 10 writes, --canary-wait 1 in the 429 run's --cleanup.")
    parser.add_argument('--out', default=str(DEFAULT_OUT), help="Where the JSON goes (default %(default)s).")
    parser.add_argument('--profile', metavar='DIR', help="Also run --initial once more under py-spy "
                        "(not counted in the figures) and write its speedscope profile to DIR.")
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args(argv)
    args.docs = args.docs or (10_000 if args.quick else 100_000)
    args.small_docs = args.small_docs or args.docs // 5
    args.lag_seconds = args.lag_seconds or (10 if args.quick else 60)
    args.quiet_seconds = args.quiet_seconds if args.quiet_seconds is not None else (20 if args.quick else 120)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.quiet_writes = 10 if args.quick else lag.QUIET_WRITES
    if args.server and not args.only and not args.only_scale:
        args.only = set(COUCHDB_DEFAULT)
    return args


class Run:
    """Progress on stderr (a long run shows where it is), phase timings,
    and the errors of phases that failed."""

    def __init__(self, secrets=()):
        self.secrets = [secret for secret in secrets if secret]
        self.started = time.monotonic()
        self.started_at = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
        self.phases = {}
        self.errors = {}

    def redact(self, text):
        """``text`` without the server's password (an error may quote a url)."""
        for secret in self.secrets:
            text = text.replace(secret, '****')
        return text

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
            self.errors[name] = self.redact(f"{type(error).__name__}: {error}")
            print(f"         {name} FAILED:\n{self.redact(traceback.format_exc())}", file=sys.stderr,
                  flush=True)
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
    with sigterm_as_interrupt(), temporary_workdir() as workdir, bench_server(workdir, args.server) as couch:
        run = Run(couch.secrets)
        server = Server(couch.url)
        watch_cpu_of(couch.pid, couchdb=couch.couchdb)
        dataset, figures = run_all(args, server, workdir, doc_types, run)
        meta = describe(args, server, run)
    goals = report.targets(figures, args)
    print(report.table(meta, dataset, figures, goals))
    report.write_json(args.out, meta, dataset, figures, goals)
    print(f"\nwrote {args.out}")
    return 1 if run.errors else 0


@dataclass
class Copy:
    """One way of copying the migrating docs, measured once per round."""
    label: str
    measure: Callable[[], dict]       # -> {'seconds', 'in_target', optional 'rss', 'dump_bytes', 'link'}
    dataset: datagen.DataSet
    index: Optional[str]              # the by_doc_type index figure it depends on ('setup_view', ...)
    base: Optional[str]               # the copy its "x" column compares with


def run_all(args, server, workdir, doc_types, run):
    big = Project(workdir, server.url, MAIN_DB, 'n')
    small = Project(workdir, server.url, SMALL_DB, 'n_small')
    small_docs = args.small_docs if not args.only or args.only & NEEDS_SMALL else 0
    datasets = run.phase('generate', f"writing {args.docs} + {small_docs} docs with "
                         "corehq/demo/realistic.py", lambda: (
                             datagen.generate(server.db(MAIN_DB), args.docs, seed=args.seed),
                             datagen.generate(server.db(SMALL_DB), small_docs, seed=args.seed + 1)
                             if small_docs else datagen.DataSet(SMALL_DB)))
    if datasets is None:
        raise RuntimeError(f"could not write the data set: {run.errors['generate']}")
    dataset, dataset_small = datasets
    for copy_db in (COLD_DB, CLEANUP_DB):  # copies of an earlier run's data set (see _copy_before_rounds)
        server.db(copy_db).delete_if_exists()
    figures = {}
    setups = [(big, 'setup_view', dataset)]
    if small_docs:
        setups.append((small, 'setup_view_small', dataset_small))
    for project, key, ds in setups:
        figures[key] = run.phase(key, f"syncing design docs to {project.main_db}, indexing by_doc_type "
                                 f"({ds.docs} docs)", lambda: _index_view(server, project, ds))
    if args.only and 'initial_cold' in args.only:  # never by default on pouchdb-server
        run.phase('setup_cold', f"copying {MAIN_DB} to {COLD_DB} without its by_doc_type view (not timed)",
                  lambda: _copy_before_rounds(server, COLD_DB, drop_view=True))
    cleanup_twin = Project(workdir, server.url, CLEANUP_DB, 'cleanup_copy')
    if not args.only_scale and (not args.only or 'cleanup' in args.only):
        run.phase('setup_cleanup_copy', f"copying {MAIN_DB} to {CLEANUP_DB} and migrating it (not timed)",
                  lambda: _copy_before_rounds(server, CLEANUP_DB,
                                              then=lambda: _initial(cleanup_twin, server)))
    copies = define_copies(args, server, big, small, dataset, dataset_small, doc_types)
    if args.only:
        copies = {name: copy for name, copy in copies.items() if name in args.only}
    else:
        copies = {name: copy for name, copy in copies.items() if name not in NOT_BY_DEFAULT_ON_POUCHDB}
    figures.update(measure_copies(args, copies, figures, run))
    initial_done = figures.get('initial') is not None or (args.only and 'initial' not in args.only)

    def wanted(name):
        return not args.only or name in args.only
    needs_state = any(wanted(name) for name in ('readers', 'continuous', 'link_lag', 'quiet_lag', 'verify',
                                                'pillow_move', 'cleanup'))
    if initial_done and needs_state and migration.phase_of(big) != 'following':
        # The round's last --initial of the big data set failed (a link or 429 run,
        # say): the phases below need a complete one.
        run.phase('restore', "one more direct --initial (not measured): the last one did not complete",
                  lambda: _initial(big, server))
    if initial_done and wanted('readers'):
        # The last --initial of the rounds left the big project's state in place:
        # read it as an operator would.
        figures['readers'] = run.phase('readers', "--stats (twice), --status, --status --json at N",
                                       lambda: migration.time_readers(big, server))
    if args.profile and initial_done:
        figures['profile'] = run.phase('profile', f"profiling one more --initial into {args.profile}",
                                       lambda: profiling.profile_initial(big, server, args.profile))
    if not args.only_scale:
        if wanted('rate_limited_phases') and (figures.get('initial_small') is not None or args.only):
            figures['rate_limited_phases'] = run.phase(
                'rate_limited_phases', f"every phase at N_small through a proxy answering "
                f"{args.rate_limit:.0%} of requests 429",
                lambda: remote.every_phase_rate_limited(small, server, args.rate_limit, args.seed,
                                                        canary_wait=1 if args.quick else None))
        if initial_done and wanted('continuous'):
            figures['continuous'] = run.phase(
                'continuous',
                f"--continuous, writer at {args.lag_rate:.0f} changes/s for {args.lag_seconds:.0f} s",
                lambda: lag.measure_lag(big, server, args.lag_rate, args.lag_seconds).as_dict())
        if initial_done and wanted('link_lag'):
            figures['link_lag'] = run.phase(
                'link_lag', f"--continuous via a {args.link_ms:g} ms link, writer at {args.lag_rate:.0f} "
                f"changes/s for {args.lag_seconds:.0f} s",
                lambda: remote.lag_through_link(big, server, args.link_ms / 1000, args.lag_rate,
                                                args.lag_seconds, args.seed))
        if initial_done and wanted('quiet_lag'):
            figures['quiet_lag'] = run.phase(
                'quiet_lag', f"--continuous caught up, {args.quiet_seconds:.0f} s of quiet, then "
                f"{args.quiet_writes} writes a second apart",
                lambda: lag.measure_quiet_lag(big, server, args.quiet_seconds, args.quiet_writes).as_dict())
        if initial_done and wanted('verify'):
            # Judged: a faithful copy of real-shaped data verifies clean (issue 17).
            figures['verify'] = run.phase('verify', "--continuous --until-caught-up, then --verify at N",
                                          lambda: migration.run_verify(big))
        if initial_done and wanted('pillow_move'):
            # Before the cleanup, which deletes the source's copies the pillow reads.
            figures['pillow_move'] = run.phase(
                'pillow_move', f"run_pillow {pillows.PILLOW} --rebuild on the source to its end, the flip, "
                f"move_pillow_checkpoint, run_pillow on the target",
                lambda: dict(pillows.time_pillow_move(big), source_docs=dataset.docs))
        if initial_done and wanted('cleanup'):
            figures['cleanup'] = run.phase('cleanup', "--cleanup with and without its canary wait and "
                                           "index catch-up",
                                           lambda: _cleanup_figures(big, cleanup_twin, server))
    for name in run.errors:
        figures.setdefault(name.split('#')[0], None)
    figures['errors'] = dict(run.errors)
    return dict(dataset.as_dict(), small=dataset_small.as_dict()), figures


def define_copies(args, server, big, small, dataset, dataset_small, doc_types):
    source, source_small = server.db(big.main_db), server.db(small.main_db)
    ddocs = {}

    def target_ddocs():
        # The design docs sync_couch_views puts on a migration target, read once.
        if not ddocs:
            ddocs['all'] = migration.design_docs(server.db(big.target_db))
        return ddocs['all']

    def peer(name, copy):
        return lambda: _peer(server, name, copy, target_ddocs())

    leaves = minimum.Leaves(source, doc_types)
    replicator = 'CouchDB' if server.is_couchdb() else 'pouchdb'

    copies = {
        'initial': Copy('--initial (dump + load)', lambda: _initial(big, server, keep_dump=True),
                        dataset, 'setup_view', 'initial'),
        'initial_small': Copy(f"--initial at N_small ({dataset_small.docs} docs)",
                              lambda: _initial(small, server, keep_dump=True),
                              dataset_small, 'setup_view_small', 'initial_small'),
        'raw_view': Copy('raw copy loop via by_doc_type view',
                         peer('raw_view', lambda t: peers.copy_via_view(source, t, doc_types)),
                         dataset, 'setup_view', 'initial'),
        'raw_view_small': Copy(f"raw copy loop via view at N_small ({dataset_small.docs} docs)",
                               peer('raw_view_small',
                                    lambda t: peers.copy_via_view(source_small, t, doc_types)),
                               dataset_small, 'setup_view_small', 'initial_small'),
    }
    if args.only_scale:
        return copies
    copies.update({
        'initial_w1': Copy('--initial --workers 1 (one request at a time)',
                           lambda: _initial(big, server, '--workers', '1'), dataset, 'setup_view', 'initial'),
        'raw_changes': Copy('raw copy loop via _changes',
                            peer('raw_changes', lambda t: peers.copy_via_changes(source, t, doc_types)),
                            dataset, None, 'initial'),
        'replicate': Copy(f"{replicator} _replicate with JS filter",
                          peer('replicate', lambda t: peers.replicate(server, source, t, doc_types)),
                          dataset, None, 'initial'),
        'replicate_mango': Copy(
            f"{replicator} _replicate with Mango selector",
            peer('replicate_mango', lambda t: peers.replicate(server, source, t, doc_types, selector=True)),
            dataset, None, 'initial'),
        'initial_cold': Copy('--initial, cold start (no by_doc_type view)',
                             lambda: _initial_cold(big, server), dataset, None, 'initial'),
        'read_alone': Copy('read-alone: _bulk_get of the leaves', lambda: _read_alone(leaves), dataset,
                           None, 'initial'),
        'write_alone': Copy('write-alone: _bulk_docs new_edits=false',
                            peer('write_alone', lambda t: minimum.write_alone(leaves, t)), dataset, None,
                            'initial'),
    })
    copies.update(remote.define_copies(args, server, big, dataset, doc_types, Copy, _initial, target_ddocs))
    return copies


def _index_view(server, project, dataset):
    project.fresh_state()
    project.sync_design_docs()
    seconds = migration.index_doc_type_view(server.db(project.main_db))
    return {'label': f"by_doc_type view index ({dataset.docs} docs)", 'seconds': seconds,
            'docs': dataset.docs, 'docs_per_s': dataset.docs / seconds}


def measure_copies(args, copies, figures, run):
    """Each copy ``rounds`` times, the order rotated every round so a drifting
    machine favours no copy and every copy follows a different one each time;
    the median is kept, with the spread."""
    names = list(copies)
    if not names:   # --only named no copy
        return {}
    step = max(1, len(names) // max(1, args.rounds))
    samples = {name: [] for name in names}
    for round_no in range(args.rounds):
        shift = (round_no * step) % len(names)
        order = names[shift:] + names[:shift]
        for name in order:
            sample = run.phase(f"{name}#{round_no + 1}", f"round {round_no + 1}/{args.rounds}: {name}",
                               copies[name].measure)
            if sample is None:
                run.errors.setdefault(name, run.errors[f"{name}#{round_no + 1}"])
            else:
                samples[name].append(sample)
    result = {}
    for name, copy in copies.items():
        results = samples[name]
        if name in run.errors or not results:
            result[name] = None
            continue
        index = figures.get(copy.index) if copy.index else None
        result[name] = report.copy_figure(copy.label, results, copy.dataset, copy.base,
                                          index_seconds=index['seconds'] if index else None)
    return result


def _initial(project, server, *extra, keep_dump=False, via=None, prepare=lambda: None):
    """A first --initial into an empty target. ``via`` is a proxy's url the
    migrator reaches both databases through; the setup goes direct, then
    ``prepare()``."""
    migration.prepare_fresh_run(project, server)
    prepare()
    measured = project.via(via) if via else project
    with cpu_meter() as cpu:
        result = migration.run_initial(measured, *extra, *(('--keep-dump',) if keep_dump else ()))
    sample = {'seconds': result.seconds, 'rss': result.peak_rss_mb, 'client_cpu_s': result.cpu_seconds,
              'in_target': migration.live_docs(server.db(project.target_db)), **cpu.figures()}
    if keep_dump:
        sample['dump_bytes'] = project.dump_path.stat().st_size
        project.dump_path.unlink()
    return sample


def _copy_before_rounds(server, copy_db, drop_view=False, then=lambda: None):
    """The main data set copied to ``copy_db`` (server-side _replicate), then
    ``then()``, made before the rounds and waited for until the server is
    idle: a copy made just before a timed run leaves the server building its
    indexes and compacting (and its files uncached) during that run alone."""
    server.json('POST', '_replicate', body={'source': server.replication_endpoint(MAIN_DB),
                                            'target': server.replication_endpoint(copy_db),
                                            'create_target': True}, timeout=3600)
    if drop_view:
        _drop_doc_type_view(server.db(copy_db))
    then()
    _wait_until_idle(server)


def _wait_until_idle(server, limit=3600):
    """Until CouchDB lists no task (an index build, a compaction) of the
    bench's databases in ``_active_tasks``; pouchdb-server lists none ever."""
    deadline = time.monotonic() + limit
    while tasks := [task for task in server.json('GET', '_active_tasks')
                    if MAIN_DB in str(task.get('database', ''))]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server still runs {len(tasks)} tasks after {limit} s: "
                               f"{sorted({task.get('type') for task in tasks})}")
        time.sleep(1)


def _initial_cold(big, server):
    """A first --initial from a source that has no by_doc_type view (the first
    migration of a big database): the copy of the main data set (see
    _copy_before_rounds), whose view is never built."""
    cold = Project(big.workdir.parent, server.url, COLD_DB, 'cold')

    def drop_view():
        # again after the setup's sync_couch_views, which puts the design doc back, and CouchDB's
        # background indexer (ken) may start on it: waited out, as it would slow this run alone
        _drop_doc_type_view(server.db(COLD_DB))
        _wait_until_idle(server)
    return _initial(cold, server, prepare=drop_view)


def _drop_doc_type_view(db):
    ddoc = db.get('_design/all_docs')
    if ddoc is not None:
        db.json('DELETE', '_design/all_docs', params={'rev': ddoc['_rev']})


def _peer(server, name, copy, design_docs):
    target = server.db(PEER_DBS[name])
    peers.prepare_target(target, design_docs)
    with cpu_meter() as cpu, client_cpu() as client:
        result = copy(target)
    in_target = migration.live_docs(target)
    target.delete()  # keep the server's working set to the databases still measured
    return {'seconds': result.seconds, 'in_target': in_target, **cpu.figures(), **client.figures()}


def _read_alone(leaves):
    leaves.id_revs()   # listed before the clock starts
    with cpu_meter() as cpu, client_cpu() as client:
        result = minimum.read_alone(leaves)
    return {'seconds': result.seconds, 'in_target': result.docs, **cpu.figures(), **client.figures()}


def _cleanup_figures(project, twin, server):
    """--cleanup as an operator runs it (its default canary wait, and the
    by_doc_type catch-up it does first), and without either, each measured.

    A cleanup deletes what it measures, so the bare one runs on ``twin``: a
    copy of the source migrated before the rounds (see _copy_before_rounds),
    whose index --initial brought up to date. On the source itself the index
    then lags by the --continuous phases' writes, as in production after
    --continuous stops.
    """
    with cpu_meter() as cpu:
        bare = migration.run_cleanup(twin, '--canary-wait', '0')
    bare_cpu = cpu.figures()
    server.db(twin.target_db).delete_if_exists()
    server.db(twin.main_db).delete_if_exists()
    with cpu_meter() as cpu:
        full = migration.run_cleanup(project)
    return {
        'bare': _cleanup_figure('--cleanup --canary-wait 0, index current', bare, bare_cpu),
        'full': _cleanup_figure('--cleanup (default canary wait, own index catch-up)', full, cpu.figures()),
    }


def _cleanup_figure(label, result, cpu):
    seconds = result.seconds
    figure = {'label': label, 'seconds': seconds, 'deleted': result.count,
              'deletes_per_s': result.count / seconds, 'peak_rss_mb': result.peak_rss_mb}
    for key, name in (('server_main_cpu_s', 'server_main_cpu'), ('server_cpu_s', 'server_cpu'),
                      ('machine_busy_s', 'machine_busy')):
        if cpu.get(key) is not None:
            figure[name] = cpu[key] / seconds
    if result.cpu_seconds is not None:
        figure['client_cpu'] = result.cpu_seconds / seconds
    return figure


def describe(args, server, run):
    return {
        'started_at': run.started_at,
        'wall_seconds': run.elapsed(),
        'phases_s': run.phases,
        'docs': args.docs, 'small_docs': args.small_docs, 'rounds': args.rounds,
        'lag_seconds': args.lag_seconds, 'lag_rate': args.lag_rate, 'quiet_seconds': args.quiet_seconds,
        'link_ms': args.link_ms, 'rate_limit': args.rate_limit, 'only_scale': args.only_scale,
        'quick': args.quick, 'cpus': os.cpu_count(), 'python': platform.python_version(),
        'server': server.describe(),
        'git_commit': _git('rev-parse', 'HEAD'),
        'core_modified_files': len(_git('status', '--porcelain', 'corehq').splitlines()),
    }


def _git(*args):
    try:
        return subprocess.run(['git', *args], cwd=PROJECT_DIR, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ''
