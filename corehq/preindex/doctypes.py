"""Which couchdbkit doc types an app defines: the guide's ``inspect`` snippet as code."""
import inspect

from couchdbkit import Document


def defined_doc_types(module):
    """Sorted doc types of the Document classes defined *in* ``module``.

    Classes imported into it belong to another app, and abstract ones
    (``class Meta: abstract = True``) never reach a database.
    """
    if module is None:
        return []
    return sorted(
        cls._doc_type for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, Document) and cls.__module__ == module.__name__ and not _is_abstract(cls)
    )


def _is_abstract(cls):
    # Only the class's own Meta counts: subclasses inherit the attribute
    # (CommCareUser sees CouchUser's Meta) but are concrete.
    return getattr(vars(cls).get('Meta'), 'abstract', False)


def doc_types_by_app(app_configs):
    """{app_label: its defined doc types} for the given Django app configs."""
    return {config.label: defined_doc_types(config.models_module) for config in app_configs}
