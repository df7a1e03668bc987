function (doc) {
    if (doc.doc_type === 'CommCareUser' && doc.domain) {
        emit([doc.domain, doc.doc_type, doc.username], null);
    }
    if (doc.doc_type === 'WebUser' && doc.domains) {
        for (var i = 0; i < doc.domains.length; i++) {
            emit([doc.domains[i], doc.doc_type, doc.username], null);
        }
    }
}
