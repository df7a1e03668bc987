"""Every bad input is one clear line and a non-zero exit, before any work starts:
numbers out of range, options of another phase, an unknown slug, dump paths
no dump can be kept at, a damaged dump, and a TLS mismatch either way."""
import http.server
import ssl
import subprocess
import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from corehq.doctypemigrations.management.commands.run_doctype_migration import PHASE_OPTIONS, usage_text
from tests.doctypemigrations.helpers import manage_py, run, state_db_ready

SLUG = 'user_db_migration'
GUIDE_USAGE = """You may run either of the following commands

./manage.py run_doctype_migration <slug> --initial
./manage.py run_doctype_migration <slug> --continuous

with with the following slugs:

user_db_migration
"""

# (command, option, value, the range the message names)
OUT_OF_RANGE = [
    ('run_doctype_migration', '--page-size', '-1', 'an integer >= 1'),
    ('run_doctype_migration', '--page-size', '0', 'an integer >= 1'),
    ('run_doctype_migration', '--workers', '0', 'an integer >= 1'),
    ('run_doctype_migration', '--workers', '-3', 'an integer >= 1'),
    ('run_doctype_migration', '--workers', 'many', 'an integer >= 1'),
    ('run_doctype_migration', '--give-up-after', '-5', 'a number >= 0'),
    ('run_doctype_migration', '--give-up-after', 'nan', 'a number >= 0'),
    ('run_doctype_migration', '--max-pending', '-1', 'an integer >= 0'),
    ('run_doctype_migration', '--canary-wait', '-0.5', 'a number >= 0'),
    ('run_doctype_migration', '--heartbeat-seconds', '0', 'a number > 0'),
    ('run_doctype_migration', '--assume-free-bytes', '-1', 'an integer >= 0'),
    ('delete_doc_conflicts', '--page-size', '0', 'an integer >= 1'),
    ('delete_doc_conflicts', '--give-up-after', '-1', 'a number >= 0'),
    ('sync_couch_views', '--give-up-after', '-1', 'a number >= 0'),
    ('preindex_everything', '--give-up-after', '-1', 'a number >= 0'),
]


@pytest.mark.parametrize('command, option, value, bound', OUT_OF_RANGE)
def test_a_number_out_of_range_is_refused_when_the_arguments_are_parsed(command, option, value, bound):
    with pytest.raises(CommandError, match=rf"argument {option}: .*{value}.* must be {bound}|"
                                           rf"argument {option}: '{value}' is not {bound}"):
        call_command(command, *([SLUG] if command != 'sync_couch_views' and command != 'preindex_everything'
                                else []), f"{option}={value}", stdout=StringIO())


def test_from_the_shell_a_number_out_of_range_is_one_line_and_exit_2(subprocess_env, tmp_path):
    result = manage_py(subprocess_env, 'run_doctype_migration', SLUG, '--initial', '--page-size', '-1',
                       cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and result.stdout == '' and 'Traceback' not in result.stderr
    assert result.stderr.splitlines()[-1] == ("manage.py run_doctype_migration: error: argument --page-size: "
                                              "-1 is out of range: it must be an integer >= 1")


PHASE_FLAGS = {'stats': '--stats', 'initial': '--initial', 'continuous': '--continuous', 'verify': '--verify',
               'cleanup': '--cleanup', 'erase_continuous_progress': '--erase-continuous-progress',
               'status': '--status'}
VALUES = {'--max-pending': '5', '--canary-wait': '1', '--settle-wait': '1', '--heartbeat-seconds': '1',
          '--assume-free-bytes': '9', '--dump-file': 'x.log'}


@pytest.mark.parametrize('dest', list(PHASE_OPTIONS))
def test_an_option_of_another_phase_is_refused_naming_both(dest, proxied_dbs):
    proxy = proxied_dbs[0]
    proxy.reset()
    option = PHASE_OPTIONS[dest]
    value = [VALUES[option.flag]] if option.flag in VALUES else []
    for phase, flag in PHASE_FLAGS.items():
        if phase == option.phase:
            continue
        with pytest.raises(CommandError) as refused:
            run(SLUG, flag, option.flag, *value)
        assert str(refused.value) == (f"{option.flag} is an option of --{option.phase} only: it does "
                                      f"nothing with {flag}.")
        assert refused.value.returncode == (2 if phase == 'status' else 1)
    assert proxy.count() == 0  # refused before any request


@pytest.mark.parametrize('args', [('no_such_slug', '--stats'), ('no_such_slug', '--initial'),
                                  ('no_such_slug', '--status'), ('no_such_slug',)])
def test_an_unknown_slug_is_said_to_be_unknown_with_the_known_ones(args, db):
    with pytest.raises(CommandError) as refused:
        run(*args)
    message = str(refused.value)
    assert message.startswith("'no_such_slug' is not a known migration slug; the known ones: "
                              "user_db_migration.")
    assert GUIDE_USAGE in message


def test_the_usage_text_is_the_guides_then_every_phase():
    with pytest.raises(CommandError) as usage:
        run()
    assert str(usage.value) == usage_text()
    assert usage_text().startswith(GUIDE_USAGE)
    for flag in ('--stats', '--verify', '--cleanup', '--status', '--erase-continuous-progress'):
        assert flag in usage_text()[len(GUIDE_USAGE):]


# -- dump paths ---------------------------------------------------------------------------------

@pytest.mark.parametrize('path, said', [
    ('folder', 'names a folder: give the path of a file, e.g.'),
    ('folder/', 'names a folder'),
    ('no/such/folder/dump.log', 'the folder .*no/such/folder does not exist'),
    ('/dev/null', r'is not a regular file \(a device or a pipe\)'),
])
def test_a_dump_path_no_dump_can_be_kept_at_is_refused_before_any_request(path, said, proxied_dbs, tmp_path):
    proxy, source, _target = proxied_dbs
    source.put({'_id': 'u1', 'doc_type': 'CommCareUser'})
    (tmp_path / 'folder').mkdir()
    proxy.reset()
    with pytest.raises(CommandError, match=f"The dump file {path}.*{said}"):
        run(SLUG, '--initial', '--dump-file', path)
    assert proxy.count() == 0


def test_a_dump_path_is_one_line_from_the_shell_too(subprocess_env, tmp_path):
    state_db_ready(subprocess_env, tmp_path)
    result = manage_py(subprocess_env, 'run_doctype_migration', SLUG, '--initial', '--dump-file', '/dev/null',
                       cwd=tmp_path, timeout=60)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert result.stderr.startswith('CommandError: The dump file /dev/null is not a regular file')
    assert result.stderr.count('\n') == 1


def test_a_garbage_dump_file_gives_the_fix_that_a_truncated_one_gives(proxied_dbs, tmp_path):
    proxy, source, _target = proxied_dbs
    for n in range(5):
        source.put({'_id': f"u{n}", 'doc_type': 'CommCareUser'})
    proxy.fail_status, proxy.fail_paths = 500, '_bulk_docs'  # the dump completes, the load cannot
    with pytest.raises(CommandError, match='kept failing'):
        run(SLUG, '--initial', '--give-up-after', '0.5')
    dump = tmp_path / f"{SLUG}.log"
    data = dump.read_bytes()
    fix = 'Move (it|the file) away and rerun --initial to dump again'
    dump.write_bytes(data[:len(data) - 10])
    proxy.clear_faults()
    with pytest.raises(CommandError, match=f"damaged.*{fix}"):
        run(SLUG, '--initial')
    dump.write_bytes(b'\x00garbage, not a dump\n' * 50)
    with pytest.raises(CommandError, match=f"does not start with a doc type migration header.*{fix}"):
        run(SLUG, '--initial')
    dump.write_bytes(data)
    assert 'Initial migration complete: 5 docs loaded' in run(SLUG, '--initial')


# -- TLS either way -------------------------------------------------------------------------------

@pytest.fixture
def tls_server(tmp_path):
    """A TLS server on loopback, with a self-signed certificate made here."""
    cert, key = tmp_path / 'cert.pem', tmp_path / 'key.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', str(key),
                    '-out', str(cert), '-days', '1', '-subj', '/CN=127.0.0.1'],
                   check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Answer)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize('phase', [('--stats',), ('--initial',), ('--continuous',)])
def test_https_to_a_plain_http_port_is_said_at_once(phase, couch_server, subprocess_env, tmp_path):
    state_db_ready(subprocess_env, tmp_path)
    env = dict(subprocess_env, COUCH_SERVER_URL=f"https://127.0.0.1:{couch_server.port}")
    result = manage_py(env, 'run_doctype_migration', SLUG, *phase, cwd=tmp_path, timeout=60)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert "https:// to a port that speaks plain HTTP, not TLS: use http://" in result.stderr
    assert 'waiting for the index' not in result.stdout + result.stderr


@pytest.mark.parametrize('phase', [('--stats',), ('--initial',), ('--continuous',)])
def test_http_to_a_tls_port_is_said_at_once(phase, tls_server, subprocess_env, tmp_path):
    state_db_ready(subprocess_env, tmp_path)
    env = dict(subprocess_env, COUCH_SERVER_URL=f"http://127.0.0.1:{tls_server}")
    result = manage_py(env, 'run_doctype_migration', SLUG, *phase, cwd=tmp_path, timeout=60)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert "http:// to a port that speaks TLS: use https://" in result.stderr


def test_an_untrusted_certificate_is_said_at_once(tls_server, subprocess_env, tmp_path):
    env = dict(subprocess_env, COUCH_SERVER_URL=f"https://127.0.0.1:{tls_server}")
    result = manage_py(env, 'run_doctype_migration', SLUG, '--stats', cwd=tmp_path, timeout=60)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert "the server's TLS certificate is not trusted (self-signed certificate)" in result.stderr
