function (doc) {
    // Test-only: a view over a migrating (CommCareUser) and a staying (Domain) doc type.
    if (doc.doc_type === 'CommCareUser' || doc.doc_type === "Domain") {
        emit(doc.domain || doc.name, null);
    }
}
