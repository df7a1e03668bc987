"""list_doc_types: the Document classes an app defines, as doc types."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from corehq.preindex.doctypes import defined_doc_types
from tests.preindex import doctype_fixtures


def list_doc_types(app_label):
    out = StringIO()
    call_command('list_doc_types', app_label, stdout=out)
    return out.getvalue()


def test_users_lists_concrete_classes_defined_in_the_app():
    # CouchUser is abstract; its subclasses inherit its Meta yet are listed
    assert list_doc_types('users').splitlines() == [
        'AdminUserRole', 'CommCareUser', 'DomainRemovalRecord', 'Invitation',
        'OrgRemovalRecord', 'UserRole', 'WebUser']


def test_other_apps():
    assert list_doc_types('domain') == 'Domain\n'
    # couchapps has no models module at all
    assert list_doc_types('couchapps') == ''


def test_unknown_app_label():
    with pytest.raises(CommandError, match="'nope'"):
        list_doc_types('nope')


def test_imported_classes_belong_to_the_module_that_defines_them():
    assert defined_doc_types(doctype_fixtures) == ['SportsTeam']
