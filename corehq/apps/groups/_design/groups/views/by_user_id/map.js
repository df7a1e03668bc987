function (doc) {
    if (doc.doc_type === 'Group' && doc.users) {
        for (var i = 0; i < doc.users.length; i++) {
            emit(doc.users[i], doc.name);
        }
    }
}
