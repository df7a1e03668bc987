"""Failures of a pillow or of its move that an operator can act on; the
commands turn each into one CommandError."""


class PillowError(Exception):
    pass


class UnknownPillow(PillowError):
    pass


class PillowMoved(PillowError):
    """The pillow's checkpoint belongs to another database than the one its app reads from."""


class PillowStopped(PillowError):
    """Another run took the pillow's claim over."""


class MoveRefused(PillowError):
    pass
