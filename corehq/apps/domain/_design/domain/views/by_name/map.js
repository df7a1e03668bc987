function (doc) {
    if (doc.doc_type === 'Domain' && doc.name) {
        emit(doc.name, null);
    }
}
