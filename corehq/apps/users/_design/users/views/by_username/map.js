function (doc) {
    if ((doc.doc_type === 'CommCareUser' || doc.doc_type === 'WebUser') && doc.username) {
        emit(doc.username, null);
    }
}
