"""Sample users, groups and domains written through the apps' Document classes."""
import random

from corehq.apps.domain.models import Domain
from corehq.apps.groups.models import DeleteGroupRecord, Group
from corehq.apps.users.models import (
    AdminUserRole, CommCareUser, DomainRemovalRecord, Invitation, UserRole, WebUser,
)

DOMAINS = ['demo-clinic', 'demo-school', 'demo-farm']


def create_sample_data(users, groups, seed=0):
    """Returns how many docs of each doc type it saved."""
    rng = random.Random(seed)
    counts = {}

    def save(doc):
        doc.save()
        counts[doc.doc_type] = counts.get(doc.doc_type, 0) + 1
        return doc

    for name in DOMAINS:
        save(Domain(name=name))
        save(UserRole(domain=name, name='field worker', permissions=['submit']))
        save(AdminUserRole(domain=name, name='admin', permissions=['*']))
    user_ids = [save(CommCareUser(username=f"user{i}@{rng.choice(DOMAINS)}", domain=rng.choice(DOMAINS)))._id
                for i in range(users)]
    for i in range(max(1, users // 10)):
        save(WebUser(username=f"web{i}@example.com", domains=rng.sample(DOMAINS, 2)))
        save(Invitation(email=f"invite{i}@example.com", domain=rng.choice(DOMAINS)))
    for i in range(groups):
        members = rng.sample(user_ids, min(5, len(user_ids)))
        save(Group(name=f"group {i}", domain=rng.choice(DOMAINS), users=members))
    save(DeleteGroupRecord(domain=DOMAINS[0], group_id='gone'))
    save(DomainRemovalRecord(domain=DOMAINS[1], user_id=user_ids[0] if user_ids else 'nobody'))
    return counts
