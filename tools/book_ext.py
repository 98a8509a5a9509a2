"""The book's own Sphinx extension (staged into the book as `_ext/book_ext.py`, named in `_config.yml`).

- Each page carries every script once: sphinx-thebe 0.3 adds its inline configuration twice in a
  Jupyter Book 1 build, and the second `const THEBE_JS_URL` is a SyntaxError in the reader's console.
- Code cells fit the column: `book_static/book.css` wraps long source lines (no sideways scrolling).
- The theme's colour mode is named ('auto'): left empty, pydata-sphinx-theme logs an error on a
  reader's first visit.
"""
from pathlib import Path


def _script_key(js) -> tuple:
    "What makes two of a page's scripts the same: the file (None or '' when inline) and its attributes (body included)."
    filename = getattr(js, "filename", js) or None
    attributes = getattr(js, "attributes", {})
    return filename, tuple(sorted((k, str(v)) for k, v in attributes.items()))


def _one_of_each_script(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        key = _script_key(js)
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept


def _name_the_mode(app, config):
    context = dict(config.html_context or {})
    context.setdefault("default_mode", "auto")   # pydata-sphinx-theme reads it from the page context
    config.html_context = context


def _add_styles(app):
    app.config.html_static_path.append(str(Path(__file__).parent / "book_static"))
    app.add_css_file("book.css")


def setup(app):
    app.connect("builder-inited", _add_styles)
    app.connect("config-inited", _name_the_mode)
    app.connect("html-page-context", _one_of_each_script, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
