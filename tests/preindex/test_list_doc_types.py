"""list_doc_types: the Document classes an app defines, as doc types."""
import sys
import types
from io import StringIO

import pytest
from couchdbkit.ext.django.schema import Document
from django.core.management import CommandError, call_command

from corehq.apps.groups.models import Group
from corehq.preindex.doctypes import defined_doc_types


def list_doc_types(app_label):
    out = StringIO()
    call_command('list_doc_types', app_label, stdout=out)
    return out.getvalue()


def test_users_lists_concrete_classes_defined_in_the_app():
    # CouchUser is abstract; its subclasses inherit its Meta yet are listed
    assert list_doc_types('users').splitlines() == [
        'AdminUserRole', 'CommCareUser', 'DomainRemovalRecord', 'Invitation',
        'OrgRemovalRecord', 'UserRole', 'WebUser']


def test_apps_without_document_classes_list_nothing():
    assert list_doc_types('domain') == 'Domain\n'
    assert list_doc_types('couchapps') == ''


def test_unknown_app_label():
    with pytest.raises(CommandError, match="'nope'"):
        list_doc_types('nope')


def test_imported_classes_belong_to_the_module_that_defines_them(monkeypatch):
    module = types.ModuleType('tests.preindex.fake_models')
    monkeypatch.setitem(sys.modules, module.__name__, module)
    source = (
        "class Team(Document):\n"
        "    doc_type = 'SportsTeam'\n"
        "    class Meta:\n"
        "        app_label = 'fake'\n")
    module.Group = Group
    module.Document = Document
    exec(source, module.__dict__)
    assert defined_doc_types(module) == ['SportsTeam']
