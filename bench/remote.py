"""Issue 11: the migrator over a link to a remote cluster, and under a rate limit.

A proxy on loopback (``bench.linkproxy``, the tests' CouchProxy in a process
of its own) stands for the link: every request waits ``--link-ms`` before it
is forwarded. The migrator reaches both databases through it (its
COUCH_SERVER_URL is the proxy's url), and so do the peers it is compared
with: the serial raw copy loop, and pouchdb's ``_replicate`` asked of the
real server with the source given as the proxy's url, so the replicator pulls
through the link like a remote peer. Another proxy answers a share of the
requests 429 with no Retry-After, as Cloudant does over its rate limit.
"""
import time

from bench import lag, linkproxy, migration, peers
from bench.commands import SLUG
from bench.couchclient import Server
from bench.server import client_cpu, cpu_meter

STEP_TIMEOUT = 1800


def define_copies(args, server, project, dataset, doc_types, Copy, initial, target_ddocs):
    """The copies measured in the rounds, next to the direct ones (see main.Copy)."""
    latency = args.link_ms / 1000
    link_name = f"{args.link_ms:g} ms link"

    def through(latency=0.0, rate_limit=0.0, *extra):
        def measure():
            with linkproxy.link(server.url, latency=latency, rate_limit=rate_limit, seed=args.seed) as proxy:
                sample = initial(project, server, *extra, via=proxy.url)
            sample['link'] = proxy.counters
            return sample
        return measure

    def raw_through_link():
        target = server.db('peer_link_raw')
        peers.prepare_target(target, target_ddocs())
        with linkproxy.link(server.url, latency=latency, seed=args.seed) as proxy:
            remote = Server(proxy.url)
            with cpu_meter() as cpu, client_cpu() as client:
                result = peers.copy_via_view(remote.db(project.main_db), remote.db(target.name), doc_types)
        return _peer_sample(result, target, proxy, cpu, client)

    def replicate_through_link():
        source, target = server.db(project.main_db), server.db('peer_link_replicate')
        peers.prepare_target(target, target_ddocs())
        with linkproxy.link(server.url, latency=latency, seed=args.seed) as proxy:
            with cpu_meter() as cpu, client_cpu() as client:
                result = peers.replicate(server, source, target, doc_types,
                                         source_url=f"{proxy.url}/{source.name}")
        return _peer_sample(result, target, proxy, cpu, client)

    return {
        'proxy_initial': Copy('--initial via the proxy, no delay', through(), dataset, 'setup_view',
                              'initial'),
        'link_initial': Copy(f"--initial via a {link_name}", through(latency), dataset, 'setup_view',
                             'initial'),
        'link_initial_w1': Copy(f"--initial --workers 1 via a {link_name}",
                                through(latency, 0.0, '--workers', '1'), dataset, 'setup_view',
                                'link_initial'),
        'link_raw': Copy(f"serial raw copy loop (view) via a {link_name}", raw_through_link, dataset,
                         'setup_view', 'link_initial'),
        'link_replicate': Copy(f"pouchdb _replicate pulling via a {link_name}", replicate_through_link,
                               dataset, None, 'link_initial'),
        'rl_initial': Copy(f"--initial via the proxy, {args.rate_limit:.0%} answered 429",
                           through(0.0, args.rate_limit), dataset, 'setup_view', 'proxy_initial'),
    }


def lag_through_link(project, server, latency, rate, seconds, seed):
    """--continuous reaching both databases through the link while the writer
    writes to the source direct, as the app does next to its cluster."""
    with linkproxy.link(server.url, latency=latency, seed=seed) as proxy:
        result = lag.measure_lag(project.via(proxy.url), server, rate, seconds).as_dict()
    result['link'] = proxy.counters
    return result


def _peer_sample(result, target, proxy, cpu, client):
    in_target = migration.live_docs(target)
    target.delete()
    return {'seconds': result.seconds, 'in_target': in_target, 'link': proxy.counters,
            **cpu.figures(), **client.figures()}


def every_phase_rate_limited(project, server, rate_limit, seed, canary_wait=None):
    """Every phase of a migration, start to finish, with ``rate_limit`` of the
    requests answered 429: --stats, --initial, --continuous --until-caught-up
    (after a writer's changes), --verify, --status, delete_doc_conflicts and
    --cleanup (its default canary wait unless ``canary_wait``), each through a proxy of its own so each
    counts its own 429s. The setup (fresh state, design docs) goes direct.
    Stops at the first step that fails; the result says which."""
    migration.prepare_fresh_run(project, server)
    source = server.db(project.main_db)
    canary = () if canary_wait is None else ('--canary-wait', str(canary_wait))
    steps = [
        ('--stats', ('run_doctype_migration', SLUG, '--stats'), (0,)),
        ('--initial', ('run_doctype_migration', SLUG, '--initial'), (0,)),
        ('writes', None, None),
        ('--continuous --until-caught-up', ('run_doctype_migration', SLUG, '--continuous',
                                            '--until-caught-up'), (0,)),
        ('--verify', ('run_doctype_migration', SLUG, '--verify'), (0,)),
        ('--status --json', ('run_doctype_migration', SLUG, '--status', '--json'), (0, 1)),
        ('delete_doc_conflicts', ('delete_doc_conflicts', SLUG), (0,)),
        ('--cleanup --noinput', ('run_doctype_migration', SLUG, '--cleanup', '--noinput', *canary), (0,)),
    ]
    results = []
    for name, args, ok_codes in steps:
        if args is None:
            writer = lag.Writer(source, seed=seed + 5)
            for _ in range(3):
                writer.write_batch(100)   # new docs and edits, a third of migrating types, written direct
            continue
        started = time.monotonic()
        with linkproxy.link(server.url, rate_limit=rate_limit, seed=seed + len(results)) as proxy:
            running = project.via(proxy.url).start(*args)
            try:
                finished = running.finish(STEP_TIMEOUT)
            finally:
                running.kill()
        ok = finished.returncode in ok_codes
        results.append({'step': name, 'ok': ok, 'exit_code': finished.returncode,
                        'seconds': time.monotonic() - started, 'command_seconds': finished.seconds,
                        'requests': proxy.counters.get('requests'),
                        'rate_limited': proxy.counters.get('rate_limited'),
                        'error': None if ok else (finished.stdout[-500:] + finished.stderr[-1500:])})
        if not ok:
            break
    return {'rate_limit': rate_limit, 'steps': results,
            'completed': len(results) == len([s for s in steps if s[1] is not None])
            and all(r['ok'] for r in results)}
