"""Text the migration commands print: tables, refused docs, error messages."""
from corehq.couch import CouchError
from corehq.doctypemigrations import state as states, verify
from corehq.doctypemigrations.errors import DocsRefused, MigrationError

_CONTINUOUS = "`./manage.py run_doctype_migration {slug} --continuous --until-caught-up`"
_BEHIND = ("--continuous is behind: run " + _CONTINUOUS + " (with a --continuous running, wait for "
           "its `All caught up`), then verify again.")
_WAIT_FOR_FOLLOWER = ("--continuous is behind: the one running copies it; wait for its `All caught up`, "
                      "then verify again.")
_BY_HAND = "No command mends this: "

# What an operator can do about each kind of difference --verify reports,
# once the initial phase is complete. Each hint names a command the phase
# runs, or says that none mends it and what to do by hand.
VERIFY_HINTS = {
    verify.MISSING: "{behind}",
    verify.STALE: "the target's copy differs from the source's doc (edited, deleted, or its doc type "
                  "changed since the last checkpoint). {behind}",
    verify.CONFLICT_DELETED: (
        "the doc left the migration's doc types and came back while conflicted: the target "
        "deleted its live conflicts when it left, and CouchDB cannot revive a deleted revision "
        "(or, after the flip, the conflict was resolved in the target). "
        "Repair: resolve the conflict in the source (./manage.py delete_doc_conflicts {slug}), "
        "then " + _CONTINUOUS + " copies the resolution."),
    verify.TARGET_ONLY: (
        _BY_HAND + "the target has revisions the source never had: an edit made in the target (after "
        "the flip, the application's own: nothing to do), or the old branch of a doc edited past the "
        "source's revs_limit while no --continuous ran. A conflict leaf that does not belong there "
        "is deleted in the target by hand (DELETE <target>/<id>?rev=<rev>); an edit the target "
        "built on the source's winner cannot be undone, only edited again."),
    verify.EXTRA: (
        _BY_HAND + "the target holds a live doc the source never had, written to the target "
        "directly. Delete it in the target (DELETE <target>/<id>?rev=<rev>) unless it belongs "
        "there (after the flip the application writes to the target, and then it does)."),
    verify.LEFT_IN_SOURCE: (
        "a migrating doc is still live in the source (written there after --continuous stopped, "
        "or the cleanup did not finish): run `./manage.py run_doctype_migration {slug} --cleanup "
        "--copy-missing`, which copies the revisions the target lacks (adding, never "
        "overwriting) and then deletes the doc from the source."),
    verify.DELETED_UNCOPIED: (
        _BY_HAND + "the source holds a revision of this doc that the target never got, and then "
        "deleted the doc (old code writing to the source after --continuous stopped); the target "
        "still has it live. See what changed (GET <source>/<id>?open_revs=all&revs=true) and "
        "decide: to apply the source's edit and deletion, copy its branch into the target (POST "
        "/_replicate with \"doc_ids\": [<id>]; a doc edited in the target since stays live, its "
        "live leaf wins), which clears this report; to keep the doc, leave it."),
}
# Before the initial phase is complete, --continuous and delete_doc_conflicts
# are refused: the repair is to finish it.
_INITIAL_NOT_COMPLETE = (
    "the initial phase is not complete (phase {phase}): run `./manage.py run_doctype_migration "
    "{slug} --initial` (it resumes where it stopped), then " + _CONTINUOUS + ", then verify again.")
_MENDED_BY_HAND = {verify.TARGET_ONLY, verify.EXTRA, verify.DELETED_UNCOPIED}


def verify_hint(outcome, phase, slug, follower_running=False):
    """The cause and repair of one kind of difference, in the phase it was found in."""
    if outcome not in _MENDED_BY_HAND and phase not in states.INITIAL_COMPLETE:
        return _INITIAL_NOT_COMPLETE.format(slug=slug, phase=phase)
    behind = (_WAIT_FOR_FOLLOWER if follower_running else _BEHIND).format(slug=slug)
    return VERIFY_HINTS[outcome].format(slug=slug, behind=behind)


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
