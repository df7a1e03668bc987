function (doc) {
    // Test-only: a view over a migrating and a staying doc type. Written with
    // indexOf so that only the known Document class tells 'Domain' is a doc type.
    if (['CommCareUser', "Domain"].indexOf(doc.doc_type) !== -1) {
        emit(doc.domain || doc.name, null);
    }
}
