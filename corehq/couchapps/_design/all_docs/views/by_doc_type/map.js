function (doc) {
    // Only a string is a doc type: a list, an object or a number (odd data)
    // is a key no "docs of type X" query asks for.
    if (typeof doc.doc_type === 'string' && doc.doc_type) {
        // The value lists the live leaf revs (winner first): a map function
        // sees _conflicts, so the doc type migration can enumerate what to copy
        // from the index alone, without reading every doc body twice.
        emit([doc.doc_type, doc._id], [doc._rev].concat(doc._conflicts || []));
    }
}
