function (doc) {
    if (doc.doc_type) {
        emit([doc.doc_type, doc._id], null);
    }
}
