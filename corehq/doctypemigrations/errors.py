"""Every failure of the migration core that an operator can act on.

The command layer turns any ``MigrationError`` (and the couch client's
``CouchError``) into one ``CommandError``, so a new failure never surfaces as
a traceback. Messages say what to do and never hold a password.
"""


class MigrationError(Exception):
    pass


class StateError(MigrationError):
    """The recorded migration state cannot be used as it is."""


class FingerprintMismatch(StateError):
    pass


class PhaseRefused(MigrationError):
    """What was asked may not run in the migration's current phase."""


class InitialAlreadyComplete(PhaseRefused):
    pass


class NotReadyToFollow(PhaseRefused):
    pass


class CleanupRefused(PhaseRefused):
    pass


class MigrationBusy(PhaseRefused):
    """Another run (--initial, --continuous or --cleanup) of the same migration is working on it."""


class FollowerStopped(MigrationError):
    """A running --continuous stopped without writing, because of another run."""


class DumpFileError(MigrationError):
    pass


class CorruptDumpFile(DumpFileError):
    pass


class DumpFileMismatch(DumpFileError):
    pass


class StatsViewMissing(MigrationError):
    pass


class DocsRefused(MigrationError):
    """The target refused documents; ``errors`` names each one (a ``DocError``)."""

    def __init__(self, message, errors):
        super().__init__(message)
        self.errors = errors


class LoadFailed(DocsRefused):
    pass


class NotEnoughDiskSpace(DumpFileError):
    """The dump would not fit in the free space where it goes."""
