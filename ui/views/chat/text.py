"""Message text: web addresses found in a body, jumbo emoji, the bubble's QTextDocument."""

from __future__ import annotations

import re

from PySide6.QtCore import QRegularExpression
from PySide6.QtGui import QColor, QFont, QTextCharFormat, QTextCursor, QTextDocument, QTextOption

URL_RE = re.compile(r"(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
TRAILING_PUNCTUATION = ".,;:!?)]}'\""


def link_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, href) of each web address in `text`."""
    spans = []
    for m in URL_RE.finditer(text):
        url = m.group(0)
        while url and url[-1] in TRAILING_PUNCTUATION:
            if url[-1] == ")" and url.count("(") >= url.count(")"):
                break
            url = url[:-1]
        if len(url) < 5:
            continue
        href = url if "://" in url else f"https://{url}"
        spans.append((m.start(), m.start() + len(url), href))
    return spans


def _is_emoji_char(cp: int) -> bool:
    return (
        0x1F000 <= cp <= 0x1FAFF
        or 0x2600 <= cp <= 0x27BF
        or 0x2B00 <= cp <= 0x2BFF
        or cp in (0x00A9, 0x00AE, 0x203C, 0x2049, 0x2122, 0x2139, 0x3030, 0x303D)
    )


def jumbo_emoji(text: str) -> bool:
    """One to three emoji and nothing else: drawn large, without a bubble (as Signal does)."""
    s = text.strip()
    if not s or len(s) > 16:
        return False
    count = 0
    joined = False
    for ch in s:
        cp = ord(ch)
        if cp in (0xFE0F, 0xFE0E, 0x20E3) or 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F:
            continue
        if cp == 0x200D:
            joined = True
            continue
        if not _is_emoji_char(cp):
            return False
        if not joined:
            count += 1
        joined = False
    return 0 < count <= 3


def build_document(
    body: str,
    font: QFont,
    color: QColor,
    link: QColor,
    marks: tuple[str, ...] = (),
    mark_colors: tuple[QColor, QColor] | None = None,
) -> QTextDocument:
    """The bubble's text: web addresses as links, `marks` (search words) highlighted."""
    doc = QTextDocument()
    doc.setDocumentMargin(0)
    doc.setDefaultFont(font)
    option = QTextOption()
    option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
    doc.setDefaultTextOption(option)
    cursor = QTextCursor(doc)
    plain = QTextCharFormat()
    plain.setForeground(color)
    pos = 0
    for start, end, href in link_spans(body):
        if start > pos:
            cursor.insertText(body[pos:start], plain)
        fmt = QTextCharFormat()
        fmt.setAnchor(True)
        fmt.setAnchorHref(href)
        fmt.setForeground(link)
        fmt.setFontUnderline(True)
        cursor.insertText(body[start:end], fmt)
        pos = end
    if pos < len(body):
        cursor.insertText(body[pos:], plain)
    if marks and mark_colors is not None:
        mark = QTextCharFormat()
        mark.setBackground(mark_colors[0])
        mark.setForeground(mark_colors[1])
        for word in marks:  # at word starts, as the full-text search matches them
            pattern = QRegularExpression(
                r"\b" + QRegularExpression.escape(word),
                QRegularExpression.PatternOption.CaseInsensitiveOption,
            )
            found = doc.find(pattern)
            while not found.isNull():
                found.mergeCharFormat(mark)
                found = doc.find(pattern, found)
    return doc
