"""Design documents kept as files: ``_design/<ddoc>/views/<view>/map.js`` (+ ``reduce.js``)."""
from pathlib import Path


def load_design_docs(design_dir):
    """{'_design/<ddoc>': design doc} for every design doc folder under ``design_dir``."""
    design_dir = Path(design_dir)
    if not design_dir.is_dir():
        return {}
    ddocs = {}
    for ddoc_dir in sorted(p for p in design_dir.iterdir() if p.is_dir()):
        views = _load_views(ddoc_dir / 'views')
        if views:
            doc_id = f"_design/{ddoc_dir.name}"
            ddocs[doc_id] = {'_id': doc_id, 'language': 'javascript', 'views': views}
    return ddocs


def _load_views(views_dir):
    if not views_dir.is_dir():
        return {}
    views = {}
    for view_dir in sorted(p for p in views_dir.iterdir() if p.is_dir()):
        map_file = view_dir / 'map.js'
        if not map_file.exists():
            continue
        view = {'map': map_file.read_text().strip()}
        reduce_file = view_dir / 'reduce.js'
        if reduce_file.exists():
            view['reduce'] = reduce_file.read_text().strip()
        views[view_dir.name] = view
    return views


def design_doc_changed(existing, wanted):
    if existing is None:
        return True
    return any(existing.get(key) != wanted.get(key) for key in ('language', 'views'))
