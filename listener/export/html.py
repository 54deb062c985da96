"""The HTML export's renderer: the viewer's message macro and stylesheet, in documents that open
offline (the CSS inlined, no script, no request to anything)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from listener.viewer import app as viewer_app
from listener.viewer import views

HERE = Path(__file__).parent


class HtmlRenderer:
    def __init__(self) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(
                [
                    jinja2.FileSystemLoader(HERE / "templates"),
                    jinja2.FileSystemLoader(viewer_app.HERE / "templates"),
                ]
            ),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters["anchor"] = views.anchor
        self._env.filters["color"] = views.color_class
        # Our own stylesheet, inlined so that a page opens from a USB stick as it does here.
        self._css = Markup((viewer_app.HERE / "static" / "viewer.css").read_text("utf-8"))

    def _render(self, name: str, **context: Any) -> str:
        return self._env.get_template(name).render(css=self._css, **context)

    def page_head(self, **context: Any) -> str:
        return self._render("page_head.html", **context)

    def batch(
        self, messages: list[views.MessageView], *, links: Any, previous_day: str | None
    ) -> str:
        return self._render("batch.html", messages=messages, links=links, previous_day=previous_day)

    def page_foot(self, **context: Any) -> str:
        return self._render("page_foot.html", **context)

    def chat_index(self, **context: Any) -> str:
        return self._render("chat_index.html", **context)

    def root_index(self, **context: Any) -> str:
        return self._render("index.html", **context)
