"""One extra --initial under py-spy, summarised: where the wall time goes.

``--idle`` keeps the samples where the process waits on a socket: for a
migration that talks to a server, waiting is most of the story.
"""
import shutil
import sys
from collections import Counter
from pathlib import Path

import orjson

from bench import migration

# Frames worth naming in the summary: the phases of --initial and the calls they make.
INTERESTING = ('corehq/doctypemigrations/', 'sqlite3', 'orjson')
SOCKET_READS = {'readinto', 'SocketIO.readinto', 'recv_into'}


def py_spy():
    found = Path(sys.executable).parent / 'py-spy'
    path = str(found) if found.exists() else shutil.which('py-spy')
    if not path:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy "
                           "(a tool for the bench, not a project requirement)")
    return path


def profile_initial(project, server, out_dir):
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    profile_path = out / 'initial.speedscope.json'
    migration.prepare_fresh_run(project, server)
    wrapper = (py_spy(), 'record', '--idle', '--rate', '200', '--format', 'speedscope',
               '--output', str(profile_path), '--')
    result = migration.run_initial(project, wrapper=wrapper)
    summary = summarize(profile_path)
    summary.update({'seconds': result.seconds, 'profile': str(profile_path)})
    print(format_summary(summary), file=sys.stderr)
    return summary


def summarize(path, top=25):
    """Inclusive share of wall time per interesting frame (function, file:line)."""
    data = orjson.loads(Path(path).read_bytes())
    frames = data['shared']['frames']
    profile = max(data['profiles'], key=lambda p: len(p['samples']))
    total = sum(profile['weights']) or 1
    inclusive = Counter()
    waiting = 0
    for stack, weight in zip(profile['samples'], profile['weights']):
        if any(frames[index]['name'] in SOCKET_READS for index in stack):
            waiting += weight
        names = set()
        for index in stack:
            frame = frames[index]
            file = frame.get('file', '')
            if any(part in file for part in INTERESTING):
                names.add(f"{frame['name']} ({file.split('corehq/')[-1]}:{frame.get('line', '')})")
        for name in names:
            inclusive[name] += weight
    return {'total_s': total, 'waiting_on_server_share': waiting / total,
            'inclusive': [(name, weight / total) for name, weight in inclusive.most_common(top)]}


def format_summary(summary):
    lines = [f"py-spy: {summary['total_s']:.1f} s sampled, "
             f"{summary['waiting_on_server_share']:.0%} waiting on a socket"]
    lines += [f"  {share:6.1%}  {name}" for name, share in summary['inclusive']]
    return '\n'.join(lines)
