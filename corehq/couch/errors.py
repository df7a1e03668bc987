"""The errors of the CouchDB client; a message never holds a password."""


class CouchError(Exception):
    """Any failure talking to CouchDB."""


class CouchUnreachable(CouchError):
    pass


class CouchStopping(CouchError):
    """Not asked: the process is stopping (see transport.stop_requests)."""


class CouchUnauthorized(CouchError):
    pass


class CouchNotFound(CouchError):
    pass


class DatabaseMissing(CouchNotFound):
    pass


class RequestTooLarge(CouchError):
    pass


class CouchHTTPError(CouchError):
    def __init__(self, message, status):
        super().__init__(message)
        self.status = status
