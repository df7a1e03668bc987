"""Text the migration commands print: tables, refused docs, error messages."""
from corehq.couch import CouchError
from corehq.doctypemigrations.errors import DocsRefused, MigrationError

# What an operator can do about each doc the migration cannot make equal.
DIVERGENCE_HINTS = {
    'conflict deleted in target': (
        "the doc left the migration's doc types and came back while conflicted: the target "
        "deleted its live conflicts when it left, and CouchDB cannot revive a deleted revision "
        "(or, after the flip, the conflict was resolved in the target). "
        "Repair: resolve the conflict in the source (./manage.py delete_doc_conflicts {slug}); "
        "--continuous copies the resolution."),
    'target-only leaf': (
        "the target has a leaf the source never had (an edit made in the target after the flip, "
        "or the old branch of a doc edited past the source's revs_limit while no --continuous "
        "ran). Keep it if it is an edit made in the target; otherwise delete that revision in "
        "the target."),
    'stale': "--continuous is behind: run it with --until-caught-up, then verify again.",
    'missing in target': "--continuous is behind: run it with --until-caught-up, then verify again.",
    'extra': "live in the target, but not a live migrating doc in the source.",
}


def count_table(doc_types, source_counts, target_counts):
    """Lines of the guide's table: doc_type, Source, Target, sorted by doc type."""
    width = max([32] + [len(t) + 2 for t in doc_types])  # the guide's layout
    lines = [f"{'doc_type':^{width - 1}} {'Source':<8}Target"]
    for doc_type in sorted(doc_types):
        lines.append(f"{doc_type:<{width}}{source_counts.get(doc_type, 0):<8}"
                     f"{target_counts.get(doc_type, 0)}")
    return lines


def describe_errors(errors, limit=20):
    lines = [f"  {e.id} {e.rev or ''}: {e.error} ({e.reason})" for e in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"  ... and {len(errors) - limit} more")
    return '\n'.join(lines)


def error_text(error):
    """One operator-facing message for any failure of the core or the couch client."""
    assert isinstance(error, (MigrationError, CouchError))
    if isinstance(error, DocsRefused):
        return f"{error}:\n{describe_errors(error.errors)}"
    return str(error)
