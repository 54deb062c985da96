"""Hostile HTML and text from chat members, as the page will receive it."""

from __future__ import annotations

import pytest

from listener.viewer import sanitize


@pytest.mark.parametrize(
    ("html", "must_not_contain"),
    [
        ("<script>alert(1)</script>x", ["<script", "alert(1)"]),
        ('<img src="x" onerror="alert(1)">', ["onerror", 'src="x"']),
        ('<a href="javascript:alert(1)">x</a>', ["javascript:"]),
        ('<a href="JaVaScRiPt:alert(1)">x</a>', ["JaVaScRiPt", "alert"]),
        ('<a href="data:text/html,<script>alert(1)</script>">x</a>', ["data:", "<script"]),
        ("<svg onload=alert(1)><circle/></svg>", ["<svg", "onload"]),
        ("<iframe src=https://evil.example></iframe>", ["<iframe", "evil"]),
        ('<style>body{display:none}</style><p style="position:fixed">x</p>', ["<style", "style="]),
        ('<form action="https://evil.example"><input name=t></form>', ["<form", "<input"]),
        ('<img src="https://tracker.example/pixel.gif">', ["tracker.example"]),
        ("<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>", ["onerror", "<math"]),
        ('<div onclick="alert(1)" id="x" class="y">t</div>', ["onclick", 'id="x"', 'class="y"']),
        ("<!-- <script>alert(1)</script> -->t", ["<script", "<!--"]),
        ('<a href="https://x.example" target="_top">x</a>', ['target="_top"']),
        ('<code class="language-py onload">c</code>', ["class="]),
        ('<meta http-equiv="refresh" content="0;url=https://evil.example">', ["<meta"]),
        ('<base href="https://evil.example/">', ["<base"]),
    ],
)
def test_hostile_html_is_neutralised(html: str, must_not_contain: list[str]) -> None:
    out = str(sanitize.html_body(html))
    for needle in must_not_contain:
        assert needle not in out, out


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<b>bold</b> <i>it</i> <del>gone</del>", "<b>bold</b> <i>it</i> <del>gone</del>"),
        ("<pre><code class=\"language-py\">x = 1</code></pre>",
         '<pre><code class="language-py">x = 1</code></pre>'),
        ('<a href="https://example.com">l</a>',
         '<a href="https://example.com" rel="noopener noreferrer nofollow">l</a>'),
        ("<ol start=\"3\"><li>c</li></ol>", '<ol start="3"><li>c</li></ol>'),
        ("<mx-reply><blockquote>quoted fallback</blockquote></mx-reply>answer", "answer"),
        ('<img src="mxc://example.org/AbC_1-2" alt="pic">',
         '<img src="/media/mxc?url=mxc%3A%2F%2Fexample.org%2FAbC_1-2" alt="pic">'),
        ('<img src="mxc://example.org/../../etc/passwd">', "<img>"),
        ('<span data-mx-spoiler="">secret</span>', '<span data-mx-spoiler="">secret</span>'),
    ],
)  # fmt: skip
def test_the_spec_formatting_survives(html: str, expected: str) -> None:
    assert str(sanitize.html_body(html)) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("<b>not bold</b>", "&lt;b&gt;not bold&lt;/b&gt;"),
        ("see https://example.com/a?b=1&c=2.",
         'see <a href="https://example.com/a?b=1&amp;c=2" rel="noopener noreferrer nofollow">'
         "https://example.com/a?b=1&amp;c=2</a>."),
        ('"https://x.example/"><script>', '&#34;<a href="https://x.example/" rel="noopener '
         'noreferrer nofollow">https://x.example/</a>&#34;&gt;&lt;script&gt;'),
        ("javascript:alert(1)", "javascript:alert(1)"),
        ("ftp://x.example/f", "ftp://x.example/f"),
    ],
)  # fmt: skip
def test_plain_bodies_are_escaped_and_only_http_links_linkified(body: str, expected: str) -> None:
    assert str(sanitize.text_body(body)) == expected


def test_a_body_uses_html_only_when_the_format_says_so() -> None:
    html = {"body": "*x*", "format": "org.matrix.custom.html", "formatted_body": "<b>x</b>"}
    assert str(sanitize.message_body(html)) == "<b>x</b>"
    assert str(sanitize.message_body({**html, "format": "other"})) == "*x*"
    assert str(sanitize.message_body({"body": 42})) == ""
    huge = {**html, "formatted_body": "<b>" + "x" * sanitize.MAX_HTML_CHARS + "</b>"}
    assert str(sanitize.message_body(huge)) == "*x*"  # too large to parse: the plain body
