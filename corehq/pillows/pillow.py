"""What a pillow is: a name, the app whose database it follows (through the
settings, so it follows a flip), and what it makes of each change for its sink."""
from corehq.pillows.errors import UnknownPillow
from corehq.pillows.sinks import UserIndexSink


class Pillow:
    """``entry(change)`` gives the sink's fields for a changed doc, or None
    when the doc has no entry (deleted, or not of the pillow's kind)."""

    def __init__(self, name, app_label, entry, sink):
        self.name = name
        self.app_label = app_label
        self.entry = entry
        self.sink = sink

    def __repr__(self):
        return f"Pillow({self.name!r})"

    def process(self, changes):
        """Bring the sink in line with these changes (the last per doc wins)."""
        entries = {}
        for change in changes:
            entries[change.id] = None if change.deleted or change.doc is None else self.entry(change.doc)
        self.sink.save({doc_id: fields for doc_id, fields in entries.items() if fields is not None})
        self.sink.delete([doc_id for doc_id, fields in entries.items() if fields is None])


USER_INDEX_DOC_TYPES = ('CommCareUser', 'WebUser', 'Group')


def user_index_entry(doc):
    """A live user or group as a search index holds it; None for anything else."""
    if doc.get('doc_type') not in USER_INDEX_DOC_TYPES:
        return None
    domain = doc.get('domain') or ','.join(doc.get('domains') or ())
    name = doc.get('username') or doc.get('name') or ''
    return {'doc_type': doc['doc_type'], 'domain': _text(domain), 'name': _text(name),
            'active': doc.get('is_active', True) is not False}


def _text(value):
    return value if isinstance(value, str) else str(value)


PILLOWS = {pillow.name: pillow for pillow in [
    Pillow('user_index', 'users', user_index_entry, UserIndexSink()),
]}


def get_pillow(name):
    try:
        return PILLOWS[name]
    except KeyError:
        raise UnknownPillow(f"There is no pillow named {name!r}; the pillows are: "
                            f"{', '.join(sorted(PILLOWS))}.") from None
