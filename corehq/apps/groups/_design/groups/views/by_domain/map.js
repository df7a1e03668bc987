function (doc) {
    if (doc.doc_type === 'Group' && doc.domain) {
        emit([doc.domain, doc.name], null);
    }
}
