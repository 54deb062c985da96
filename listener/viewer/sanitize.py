"""Make what a chat member wrote safe to put in a page. Pure.

``formatted_body`` is HTML that any member of a chat chose: it goes through nh3 (Ammonia) with
the tags and attributes the Matrix spec allows in ``org.matrix.custom.html`` (client-server API,
"m.room.message msgtypes"), ``mx-reply`` fallbacks removed with their content (the viewer shows
the quoted message itself), ``mxc://`` images pointed at the viewer's own media route and every
other image dropped (an external image is a tracking pixel: it tells its owner who read the
chat, and when). Plain bodies are escaped, then their http(s) links made clickable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import nh3
from markupsafe import Markup, escape

# The spec's list (client-server API § m.room.message, HTML formatting), minus what a page
# cannot show without inline styles or scripts.
ALLOWED_TAGS = frozenset(
    {
        "font", "del", "s", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul",
        "ol", "sup", "sub", "li", "b", "i", "u", "strong", "em", "strike", "code", "hr", "br",
        "div", "table", "thead", "tbody", "tr", "th", "td", "caption", "pre", "span", "img",
        "details", "summary",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "font": {"data-mx-bg-color", "data-mx-color", "color"},
    "span": {"data-mx-bg-color", "data-mx-color", "data-mx-spoiler"},
    "a": {"href", "target"},
    "img": {"width", "height", "alt", "title", "src"},
    "ol": {"start"},
    "code": {"class"},
}
# mxc is let through the scheme check only so that the filter below can rewrite it.
URL_SCHEMES = frozenset({"http", "https", "mailto", "matrix", "mxc"})
MXC = re.compile(r"^mxc://([A-Za-z0-9.:\-\[\]]{1,255})/([A-Za-z0-9_\-]{1,255})$")
CODE_CLASS = re.compile(r"^language-[A-Za-z0-9_+\-]{1,32}$")
LINK = re.compile(r"https?://[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]}]", re.IGNORECASE)
MAX_HTML_CHARS = 64 * 1024  # a larger formatted body is shown as its plain body instead


def mxc_route(mxc_url: str) -> str | None:
    """The viewer's URL for an archived ``mxc://`` URL (None for anything that is not one)."""
    if not MXC.match(mxc_url):
        return None
    return "/media/mxc?url=" + quote(mxc_url, safe="")


def _filter(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src":
        return mxc_route(value)
    if attribute == "href":
        # A link to media goes through the archive too; other mxc URLs are nothing a browser
        # can open.
        if value.lower().startswith("mxc:"):
            return mxc_route(value)
        return value
    if tag == "a" and attribute == "target":
        return "_blank" if value == "_blank" else None
    if tag == "code" and attribute == "class":
        return value if CODE_CLASS.match(value) else None
    if attribute in ("width", "height", "start"):
        return value if value.isdigit() and len(value) <= 5 else None
    return value


_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags={"mx-reply", "script", "style"},
    attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
    attribute_filter=_filter,
    url_schemes=set(URL_SCHEMES),
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)


def html_body(formatted_body: str) -> Markup:
    """Sanitised HTML, safe to insert in a page as it is."""
    return Markup(_CLEANER.clean(formatted_body))  # nh3 output: sanitised


def text_body(body: str) -> Markup:
    """A plain body escaped, with its http(s) links made into links."""
    parts: list[str] = []
    position = 0
    for match in LINK.finditer(body):
        parts.append(str(escape(body[position : match.start()])))
        url = match.group(0)
        parts.append(
            f'<a href="{escape(url)}" rel="noopener noreferrer nofollow">{escape(url)}</a>'
        )
        position = match.end()
    parts.append(str(escape(body[position:])))
    return Markup("".join(parts))  # every piece above is escaped


def message_body(content: Mapping[str, Any]) -> Markup:
    """The body to show for a message's content: its sanitised HTML when it has one that is
    ``org.matrix.custom.html``, else its plain body."""
    body = content.get("body")
    formatted = content.get("formatted_body")
    if (
        content.get("format") == "org.matrix.custom.html"
        and isinstance(formatted, str)
        and len(formatted) <= MAX_HTML_CHARS
    ):
        return html_body(formatted)
    return text_body(body if isinstance(body, str) else "")
