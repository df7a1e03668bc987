"""The admin shows each migration's status, read-only.

The first tests ask the admin through Django's test client; the last one is
an operator's visit: `./manage.py runserver` in a process of its own, and
Debian's chromium, headless, logging in and opening the migration.
"""
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from corehq.doctypemigrations import claim as claims
from corehq.couchsettings import CouchSettingsHelper
from corehq.doctypemigrations import state as states, status
from corehq.doctypemigrations.migrator_instances import users_migration
from corehq.doctypemigrations.models import (
    CLEANING, FOLLOWING, LOADING, DocTypeMigration, DocTypeMigrationCheckpoint, DocTypeMigrationRefusal,
)
from corehq.embedded_couch.server import free_port
from tests.conftest import PROJECT_DIR
from tests.doctypemigrations.data import seed
from tests.doctypemigrations.helpers import manage_py, state_db_ready
from tests.doctypemigrations.test_status import dump_killed
from tests.processes import running

SLUG = users_migration.slug
CHANGELIST = '/admin/doctypemigrations/doctypemigration/'
CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--window-size=1280,1700')
PASSWORD = 'not-a-real-password-3141'
WRITES_BETWEEN_BATCHES = (3, 9, 5)


def recorded(phase, refused=(), checkpoint=None):
    """A state row as the commands would have left it."""
    row = DocTypeMigration.objects.create(slug=SLUG, phase=phase, fingerprint='f' * 64, original_seq='7',
                                          docs_dumped=40, docs_loaded=40 - len(refused))
    for offset, doc_id in enumerate(refused):
        DocTypeMigrationRefusal.objects.create(migration=row, doc_id=doc_id, rev='1-abc', error='forbidden',
                                               reason='not on my watch', line_position=offset)
    if checkpoint is not None:
        DocTypeMigrationCheckpoint.objects.create(migration=row, seq=checkpoint)
    return row


def change_url(row):
    return f"{CHANGELIST}{row.pk}/change/"


@pytest.fixture
def unreachable_couch(settings, db):
    settings.COUCH_SETTINGS_HELPER = CouchSettingsHelper(f"http://127.0.0.1:{free_port()}/commcarehq",
                                                         settings.COUCHDB_APPS, ['users'])


# -- through the test client ----------------------------------------------------

def test_the_page_is_read_only_and_renders_without_couch(admin_client, unreachable_couch):
    row = recorded(LOADING, refused=['m5'])
    page = admin_client.get(change_url(row))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'UNREACHABLE' in html and 'connection refused' in html  # and the rest still shows:
    assert 'loading' in html and '39 of 40 docs loaded' in html
    assert 'm5' in html and 'not on my watch' in html and 'Attention needed' in html
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert admin_client.post(change_url(row), {'phase': FOLLOWING}).status_code == 403
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    assert DocTypeMigration.objects.get(pk=row.pk).phase == LOADING


def test_a_dump_under_way_shows_what_it_has_left_and_an_eta(admin_client, migration_dbs):
    source, target = migration_dbs
    seed(source, n=40)
    dump_killed(source, target)
    row = states.get(SLUG)
    html = admin_client.get(change_url(row)).content.decode()
    assert f"{row.docs_dumped} docs dumped, " in html and ' docs left to dump' in html
    assert '(from the dump rate)' in html and 'the initial phase stopped before it finished' in html


def test_a_row_of_a_migrator_no_longer_registered_shows_its_fields(admin_client, unreachable_couch):
    row = DocTypeMigration.objects.create(slug='retired_migration', phase=FOLLOWING, fingerprint='f' * 64,
                                          original_seq='7')
    html = admin_client.get(change_url(row)).content.decode()
    assert 'is not a registered migrator' in html and 'retired_migration' in html


def test_many_refusals_are_all_counted_and_the_first_listed(admin_client, unreachable_couch, monkeypatch):
    monkeypatch.setattr(status, 'REFUSALS_LISTED', 2)
    # ids no random token on the page (the CSRF token) can hold by chance
    row = recorded(LOADING, refused=['refused-doc-0', 'refused-doc-1', 'refused-doc-2'])
    html = admin_client.get(change_url(row)).content.decode()
    assert '3 document(s), the first 2 listed' in html and 'refused 3 document(s)' in html
    assert 'refused-doc-1' in html and 'refused-doc-2' not in html


def test_delete_warns_and_is_refused_once_the_cleanup_started_or_a_follower_runs(admin_client,
                                                                                 unreachable_couch):
    row = recorded(FOLLOWING, checkpoint='7')
    confirm = admin_client.get(f"{CHANGELIST}{row.pk}/delete/")
    assert confirm.status_code == 200 and 'forgets its phase' in confirm.content.decode()
    claims.claim(row, claims.new_owner())
    assert admin_client.get(f"{CHANGELIST}{row.pk}/delete/").status_code == 403
    assert 'a --continuous is running' in admin_client.get(change_url(row)).content.decode()
    claims.release(row, row.runner)
    row.phase = CLEANING
    row.save()
    assert admin_client.post(f"{CHANGELIST}{row.pk}/delete/", {'post': 'yes'}).status_code == 403
    assert 'its cleanup has started' in admin_client.get(change_url(row)).content.decode()
    assert DocTypeMigration.objects.filter(pk=row.pk).exists()


def test_the_list_has_no_bulk_delete_and_the_admin_serves_its_css(admin_client, unreachable_couch):
    recorded(LOADING, refused=['m5'])
    listing = admin_client.get(CHANGELIST).content.decode()
    assert SLUG in listing and 'name="action"' not in listing
    assert admin_client.get('/').url == '/admin/'
    css = admin_client.get('/static/admin/css/base.css')
    assert css.status_code == 200 and b''.join(css.streaming_content)


# -- in a real browser ------------------------------------------------------------

@pytest.fixture
def browser(tmp_path):
    if not all(os.access(path, os.X_OK) for path in (CHROMIUM, CHROMEDRIVER)):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/bootstrap installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + (f"--user-data-dir={tmp_path / 'chromium-profile'}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.implicitly_wait(30)  # a busy machine renders slowly
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def refused_in_a_subprocess(proxied_dbs, subprocess_env, tmp_path):
    """--initial run by an operator's shell, with the target refusing m5:
    the migration stays in loading with one refusal. Returns the environment."""
    proxy, source, _target = proxied_dbs
    seed(source)
    env = dict(subprocess_env, COUCH_SERVER_URL=proxy.url)
    state_db_ready(env, tmp_path)
    proxy.inject_doc_errors = {'m5': ('forbidden', 'not on my watch')}
    result = manage_py(env, 'run_doctype_migration', SLUG, '--initial', cwd=tmp_path)
    assert result.returncode == 1 and 'refused' in result.stderr
    return env


@pytest.fixture
def followed_in_a_subprocess(proxied_dbs, subprocess_env, tmp_path):
    """--initial, then --continuous run three times by an operator's shell, with
    writes before each run: the migration has real checkpoints that counted
    their changes. Returns the environment."""
    proxy, source, _target = proxied_dbs
    seed(source)
    env = dict(subprocess_env, COUCH_SERVER_URL=proxy.url)
    state_db_ready(env, tmp_path)
    result = manage_py(env, 'run_doctype_migration', SLUG, '--initial', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for batch, writes in enumerate(WRITES_BETWEEN_BATCHES):
        source.bulk_docs([{'_id': f"later-{batch}-{i}", 'doc_type': 'WebUser', 'username': f"w{batch}.{i}"}
                          for i in range(writes)])
        result = manage_py(env, 'run_doctype_migration', SLUG, '--continuous', '--until-caught-up',
                           cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    return env


@pytest.fixture
def runserver(refused_in_a_subprocess, tmp_path):
    """`./manage.py runserver` as the README says, with a superuser; its base url."""
    yield from serve_admin(refused_in_a_subprocess, tmp_path)


@pytest.fixture
def runserver_following(followed_in_a_subprocess, tmp_path):
    yield from serve_admin(followed_in_a_subprocess, tmp_path)


def serve_admin(env, tmp_path):
    env = dict(env, DJANGO_SUPERUSER_PASSWORD=PASSWORD)
    created = manage_py(env, 'createsuperuser', '--noinput', '--username', 'operator',
                        '--email', 'operator@example.com', cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, PROJECT_DIR / 'manage.py', 'runserver', '--noreload', f"127.0.0.1:{port}"]
    with open(tmp_path / 'runserver.log', 'w') as log, \
            running(command, stop_signal=signal.SIGTERM, timeout=30, cwd=tmp_path, env=env, stdout=log,
                    stderr=subprocess.STDOUT) as server:
        wait_until_serving(server, f"{base}/admin/login/", tmp_path / 'runserver.log')
        yield base


def wait_until_serving(server, url, log_path, limit=60):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert server.poll() is None, f"runserver exited:\n{log_path.read_text()}"
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"runserver never answered:\n{log_path.read_text()}")


def open_the_migration(browser, base):
    """Log in as the operator and open the migration's page, by its links."""
    from selenium.webdriver.common.by import By
    browser.get(f"{base}/admin/")
    browser.find_element(By.ID, 'id_username').send_keys('operator')
    browser.find_element(By.ID, 'id_password').send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, 'input[type=submit]').click()
    browser.find_element(By.LINK_TEXT, 'Doc type migrations').click()
    browser.find_element(By.LINK_TEXT, SLUG).click()


def test_an_operator_sees_the_status_in_a_browser(runserver, browser, tmp_path):
    from selenium.webdriver.common.by import By
    open_the_migration(browser, runserver)

    def shown(label):
        selector = f"#migration-status .field-status-{label} .readonly"
        return browser.find_element(By.CSS_SELECTOR, selector).text

    assert shown('phase') == 'loading'
    row = states_in_subprocess_db(tmp_path)
    assert shown('load') == f"{row['docs_loaded']} of {row['docs_dumped']} docs loaded"
    assert f"{row['docs_dumped']} docs dumped, complete" in shown('dump')
    assert shown('refused') == '1 document(s)' and '(reachable)' in shown('source')
    refused = browser.find_element(By.ID, 'refused-docs').text
    assert 'm5' in refused and 'forbidden' in refused and 'not on my watch' in refused
    attention = browser.find_element(By.CSS_SELECTOR, '#migration-status .attention').text
    assert 'refused 1 document(s)' in attention
    assert not browser.find_elements(By.NAME, '_save')
    # the admin's own stylesheet reached the browser
    header = "return getComputedStyle(document.getElementById('header')).display"
    assert browser.execute_script(header) == 'flex'
    history = browser.find_element(By.ID, 'checkpoint-history')
    assert 'No checkpoint history yet' in history.text and not history.find_elements(By.TAG_NAME, 'svg')
    screenshot = os.environ.get('ADMIN_SCREENSHOT') or str(tmp_path / 'admin-migration.png')
    assert browser.save_screenshot(screenshot)


def test_an_operator_sees_the_changes_copied_per_minute(runserver_following, browser, tmp_path):
    from selenium.webdriver.common.by import By
    open_the_migration(browser, runserver_following)
    assert browser.find_element(By.CSS_SELECTOR, '#migration-status .field-status-phase .readonly').text \
        == 'following'
    chart = browser.find_element(By.CSS_SELECTOR, '#checkpoint-history svg')
    bars = chart.find_elements(By.CSS_SELECTOR, 'rect.bar')
    drawn = {bar.get_attribute('data-minute')[:16].replace('T', ' '): int(bar.get_attribute('data-changes'))
             for bar in bars}
    per_minute = changes_per_minute_in_subprocess_db(tmp_path)
    counts = [changes for _at, changes in recorded_counts(tmp_path)]  # one checkpoint per run
    assert len(counts) == len(WRITES_BETWEEN_BATCHES)
    assert all(count >= writes for count, writes in zip(counts, WRITES_BETWEEN_BATCHES))
    assert {minute: changes for minute, changes in drawn.items() if changes} == per_minute
    # each bar is as tall as its count, on one scale: the tallest is the busiest minute
    heights = {bar.get_attribute('data-minute')[:16].replace('T', ' '): bar.rect['height'] for bar in bars}
    busiest = max(per_minute, key=per_minute.get)
    assert heights[busiest] == max(heights.values()) > 0
    for minute, changes in per_minute.items():
        assert heights[minute] == pytest.approx(heights[busiest] * changes / per_minute[busiest], abs=1.5)
    labels = [text.text for text in chart.find_elements(By.TAG_NAME, 'text')]
    assert 'changes / minute' in labels and 'minute (UTC)' in labels and '0' in labels
    summary = browser.find_element(By.CSS_SELECTOR, '#checkpoint-history .summary').text
    assert summary.startswith(f"{sum(per_minute.values())} change(s) copied")
    screenshot = os.environ.get('ADMIN_HISTORY_SCREENSHOT') or str(tmp_path / 'admin-history.png')
    browser.execute_script("document.getElementById('checkpoint-history').scrollIntoView()")
    assert browser.save_screenshot(screenshot)


def recorded_counts(tmp_path):
    """(recorded_at, changes) of the pairs --continuous recorded, read from its own database."""
    import sqlite3
    with sqlite3.connect(tmp_path / 'state.sqlite3') as conn:
        return conn.execute("SELECT recorded_at, changes FROM doctypemigrations_doctypemigrationseqpair "
                            "WHERE changes IS NOT NULL ORDER BY id").fetchall()


def changes_per_minute_in_subprocess_db(tmp_path):
    per_minute = {}
    for recorded_at, changes in recorded_counts(tmp_path):
        per_minute[recorded_at[:16]] = per_minute.get(recorded_at[:16], 0) + changes
    return per_minute


def states_in_subprocess_db(tmp_path):
    import sqlite3
    with sqlite3.connect(tmp_path / 'state.sqlite3') as conn:
        conn.row_factory = sqlite3.Row
        return dict(conn.execute("SELECT docs_dumped, docs_loaded FROM doctypemigrations_doctypemigration")
                    .fetchone())
