function (doc) {
    if (doc.doc_type) {
        // The value lists the live leaf revs (winner first): a map function
        // sees _conflicts, so the doc type migration can enumerate what to copy
        // from the index alone, without reading every doc body twice.
        emit([doc.doc_type, doc._id], [doc._rev].concat(doc._conflicts || []));
    }
}
