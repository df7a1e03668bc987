"""Which views a doc type migration touches, and on which databases they live
today and after the flip: the guide's ``grep -r --include=map.js <DocType>``
done properly.

Everything is worked out from files and settings; no database is read, so the
report describes what ``sync_couch_views`` would put where.
"""
import re
from collections import namedtuple

from corehq.couchsettings import CouchSettingsHelper
from corehq.doctypemigrations.migrator import with_deleted_doc_types
from corehq.preindex.doctypes import doc_types_by_app
from corehq.preindex.registry import design_doc_placements

# Their views work on every doc type (corehq/couchapps/README.md), so they are
# listed on their own rather than under each doc type.
GENERIC_APPS = ('couchapps',)

# ``today`` and ``after`` are sorted tuples of full database names.
View = namedtuple('View', 'app_label doc_id name map_js today after')
MixedView = namedtuple('MixedView', 'view migrating staying')
Report = namedtuple('Report', (
    'slug source_db target_db flipping_apps views_by_doc_type generic_views '
    'mixed_views uncovered_doc_types'))

_DOC_TYPE = r"[A-Z][A-Za-z0-9]*(?:-Deleted)?"
_COMPARED_TO_DOC_TYPE = re.compile(
    rf"""doc\.doc_type\s*[!=]==?\s*(['"])(?P<after>{_DOC_TYPE})\1"""
    rf"""|(['"])(?P<before>{_DOC_TYPE})\3\s*[!=]==?\s*doc\.doc_type""")


def mentions(map_js, doc_type):
    """Whether ``map_js`` holds ``doc_type`` as a whole string literal.

    The quotes are the word boundary: 'CommCareUser' matches neither
    'CommCareUserX' nor 'CommCareUser-Deleted'.
    """
    return re.search(rf"""(['"]){re.escape(doc_type)}\1""", map_js) is not None


def compared_doc_types(map_js):
    """CamelCase literals compared with ``doc.doc_type``: doc types even when no
    Document class in the project defines them."""
    return {m.group('after') or m.group('before') for m in _COMPARED_TO_DOC_TYPE.finditer(map_js)}


def flipping_apps(migrator, helper, app_doc_types):
    """Apps that move to the target with the flip.

    Settings only tell us which database an app uses now, not which settings
    variable will be flipped, so: the apps still on the source database that
    define a doc type the migrator moves.
    """
    moving = set(migrator.all_doc_types)
    return sorted(
        label for label, db_name in helper.app_db_names.items()
        if db_name == migrator.source_db_name and moving & set(app_doc_types.get(label, ())))


def flipped_helper(helper, migrator, apps):
    couchdb_apps = [(label, migrator.target_db_name if label in apps else db_name)
                    for label, db_name in helper.app_db_names.items()]
    return CouchSettingsHelper(helper.main_db_url, couchdb_apps, helper.extra_db_names)


def collect_views(helper, today_placements, after_placements):
    """Every view of the placed design docs with the databases it is on, sorted."""
    found = {}
    for when, placements in (('today', today_placements), ('after', after_placements)):
        for placement in placements:
            for name, view in placement.ddoc['views'].items():
                key = (placement.app_label, placement.doc_id, name)
                entry = found.setdefault(key, {'map_js': view['map'], 'today': set(), 'after': set()})
                entry[when].add(helper.full_db_name(placement.db_name))
    return [
        View(app_label, doc_id, f"{doc_id[len('_design/'):]}/{name}", entry['map_js'],
             tuple(sorted(entry['today'])), tuple(sorted(entry['after'])))
        for (app_label, doc_id, name), entry in sorted(found.items())
    ]


def mixed_views(views, migrating, known_doc_types):
    """Views that mention a migrating and a staying doc type: once the doc types
    live in separate databases, neither copy of the view sees all its docs."""
    mixed = []
    for view in views:
        moving = [t for t in migrating if mentions(view.map_js, t)]
        staying = {t for t in known_doc_types if mentions(view.map_js, t)}
        staying |= compared_doc_types(view.map_js)
        staying -= set(migrating)
        if moving and staying:
            mixed.append(MixedView(view, moving, sorted(staying)))
    return mixed


def build_report(migrator, helper, app_configs, extra_registrations):
    """The report for ``migrator``; the arguments are those of
    ``design_doc_placements``, so callers (and tests) choose which design docs
    take part."""
    app_doc_types = doc_types_by_app(app_configs)
    apps = flipping_apps(migrator, helper, app_doc_types)
    views = collect_views(
        helper,
        design_doc_placements(helper, app_configs, extra_registrations),
        design_doc_placements(flipped_helper(helper, migrator, apps), app_configs, extra_registrations))
    known = with_deleted_doc_types(t for doc_types in app_doc_types.values() for t in doc_types)
    by_doc_type = {t: [v for v in views if mentions(v.map_js, t)] for t in migrator.all_doc_types}
    target = helper.full_db_name(migrator.target_db_name)
    return Report(
        slug=migrator.slug,
        source_db=helper.full_db_name(migrator.source_db_name),
        target_db=target,
        flipping_apps=apps,
        views_by_doc_type=by_doc_type,
        generic_views=[v for v in views if v.app_label in GENERIC_APPS],
        mixed_views=mixed_views(views, migrator.all_doc_types, known),
        uncovered_doc_types=[t for t, vs in by_doc_type.items() if not any(target in v.after for v in vs)],
    )


def _view_dict(view):
    return {'view': view.name, 'app': view.app_label, 'design_doc': view.doc_id,
            'today': list(view.today), 'after_flip': list(view.after)}


def report_as_dict(report):
    """The report as plain data, for ``--json``."""
    return {
        'slug': report.slug,
        'source_db': report.source_db,
        'target_db': report.target_db,
        'flipping_apps': report.flipping_apps,
        'views_by_doc_type': {t: [_view_dict(v) for v in vs] for t, vs in report.views_by_doc_type.items()},
        'generic_views': [_view_dict(v) for v in report.generic_views],
        'mixed_views': [{**_view_dict(m.view), 'migrating': m.migrating, 'staying': m.staying}
                        for m in report.mixed_views],
        'uncovered_doc_types': report.uncovered_doc_types,
    }


def _view_line(view):
    return (f"{view.name} (app {view.app_label}): today {', '.join(view.today) or '-'}; "
            f"after the flip {', '.join(view.after) or '-'}")


def report_lines(report):
    """(kind, text) lines of the readable report; kind is 'heading', 'plain',
    'warning' or 'ok', for the caller to style."""
    yield 'heading', f"Doc type migration {report.slug}: {report.source_db} -> {report.target_db}"
    yield 'plain', f"  apps flipping to {report.target_db}: {', '.join(report.flipping_apps) or 'none'}"
    yield 'heading', "Views whose map.js mentions a migrating doc type:"
    for doc_type, views in report.views_by_doc_type.items():
        yield 'plain', f"  {doc_type}:" + ('' if views else ' no view')
        for view in views:
            yield 'plain', f"    {_view_line(view)}"
    yield 'heading', "Generic views (every doc type):"
    for view in report.generic_views:
        yield 'plain', f"  {_view_line(view)}"
    yield from _mixed_lines(report)
    yield from _uncovered_lines(report)


def _mixed_lines(report):
    if not report.mixed_views:
        yield 'ok', "No view mixes migrating and staying doc types."
        return
    yield 'warning', ("Views mixing migrating and staying doc types; they break when the "
                      "doc types are split, so split them first:")
    for mixed in report.mixed_views:
        yield 'warning', (f"  {mixed.view.name} (app {mixed.view.app_label}): migrating "
                          f"{', '.join(mixed.migrating)}; staying {', '.join(mixed.staying)}")


def _uncovered_lines(report):
    if not report.uncovered_doc_types:
        yield 'ok', f"Every migrating doc type has a view on {report.target_db} after the flip."
        return
    yield 'warning', (f"No view on {report.target_db} mentions these doc types after the flip "
                      "(only generic views cover them; fine if they are read by id only):")
    yield 'warning', f"  {', '.join(report.uncovered_doc_types)}"
