from corehq.preindex.registry import ExtraPreindexPlugin  # noqa: F401
