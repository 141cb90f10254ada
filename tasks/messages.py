"""E-mail and netnews messages as text fields: strip a real header block, keep plain text whole.

20News posts and AESLC e-mails open with ``From:``/``Subject:`` headers; a
plain text that merely begins with ``Note:`` must not lose its first line.
``text_format`` (a task option) says which: ``auto`` strips only blocks with
real header names, ``email`` requires one, ``plain`` never strips.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^([A-Za-z][^\s:]*):[ \t]*(.*)$")
_BLANK = re.compile(r"\n[ \t]*\n")
_EMAIL = re.compile(r"[\w.+-]+@[\w.-]+")
#: ``text_format`` values: how a text field is read.
TEXT_FORMATS = ("auto", "email", "plain")
#: Standard e-mail (RFC 5322) and netnews (RFC 1036) header names; ``auto`` needs them, not any ``Word:``.
KNOWN_HEADERS = frozenset({
    "from", "subject", "organization", "organisation", "lines", "date", "newsgroups", "message-id", "path",
    "reply-to", "sender", "to", "cc", "bcc", "references", "in-reply-to", "keywords", "summary", "distribution",
    "followup-to", "expires", "nntp-posting-host", "article-i.d.", "x-newsreader", "x-mailer", "mime-version",
    "content-type", "content-transfer-encoding", "return-path", "received", "originator", "approved",
    "supersedes", "xref", "news-software",
})
#: ``auto`` needs one of these (every message has a sender or a subject) and two known names in all.
_ANCHOR_HEADERS = frozenset({"from", "subject", "newsgroups", "message-id"})


def _header_block(raw: str) -> tuple[list[str], str] | None:
    """(header lines, body) when the text opens with a block of ``Name: value`` lines, else None."""
    parts = _BLANK.split(raw, maxsplit=1)
    head, body = parts[0], (parts[1] if len(parts) > 1 else "")
    lines = head.split("\n")
    # Every line a "Name: value" header or a folded continuation (leading space).
    if any(_HEADER.match(x) for x in lines) and all(_HEADER.match(x) or x[:1] in (" ", "\t") for x in lines):
        return lines, body
    return None


def looks_like_email(raw: str) -> bool:
    """``auto``'s test: a header block with real header names (From/Subject...), not any ``Word:`` opening."""
    block = _header_block(raw.replace("\r\n", "\n"))
    if block is None:
        return False
    names = {m.group(1).lower() for m in map(_HEADER.match, block[0]) if m}
    known = names & KNOWN_HEADERS
    return bool(names & _ANCHOR_HEADERS) and len(known) >= 2


def split_message(raw: str, text_format: str = "auto", where: str = "") -> tuple[dict[str, str], str]:
    """Text -> (lower-cased headers, body), by ``text_format``.

    ``plain``: never strip (the whole text is the body). ``email``: the text
    must open with a header block (everything up to the first blank line, all
    ``Name: value`` lines or folded continuations); otherwise a ``ValueError``
    naming ``where``. ``auto``: strip only when :func:`looks_like_email` -
    a plain text that merely begins with ``MLB:`` or ``Note:`` is kept whole.
    """
    if text_format not in TEXT_FORMATS:
        raise ValueError(f"text_format={text_format!r} is not one of {list(TEXT_FORMATS)}")
    raw = raw.replace("\r\n", "\n")
    if text_format == "plain" or (text_format == "auto" and not looks_like_email(raw)):
        return {}, raw.strip()
    block = _header_block(raw)
    if block is None:
        raise ValueError(
            f"{where or 'text'}: text_format=email but the text does not open with a header block "
            f"('Name: value' lines, then a blank line); use text_format=plain or auto for such texts"
        )
    lines, body = block
    headers: dict[str, str] = {}
    for line in lines:
        m = _HEADER.match(line)
        if m:
            headers.setdefault(m.group(1).lower(), m.group(2).strip())
    return headers, body.strip()


def author_id(from_header: str) -> str:
    """The e-mail address in a From: header (lower-cased), else the header itself."""
    m = _EMAIL.search(from_header)
    return (m.group(0) if m else from_header).strip().lower()
