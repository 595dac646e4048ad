"""Light and dark themes: colours, the Qt palette, one style sheet, tinted SVG icons.

The theme follows the system colour scheme (``QStyleHints.colorScheme``) unless the
"theme" setting says "light" or "dark". Delegates read colours from ``current()`` when they
paint; widgets that cache icons listen to ``manager().changed``.

Everything is vector or computed: icons are SVG rendered at the device pixel ratio, avatars
and ticks are painted, so the app is crisp at any scale factor.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, fields
from pathlib import Path

from PySide6.QtCore import QByteArray, QObject, QPoint, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QGuiApplication,
    QIcon,
    QIconEngine,
    QPainter,
    QPalette,
    QPixmap,
)
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QApplication

from ui import _pyside_fix

_pyside_fix.apply()  # before any Qt call (see ui/_pyside_fix.py)

RESOURCES = Path(__file__).resolve().parent / "resources"  # package data (pyproject.toml)
ICONS = RESOURCES / "icons"
APP_ICON = RESOURCES / "chinwag.svg"

MODES = ("system", "light", "dark")


@dataclass(frozen=True, slots=True)
class Theme:
    name: str
    window: str  # conversation area
    sidebar: str  # conversation list pane
    surface: str  # header, composer bar
    border: str
    text: str
    text_secondary: str
    text_muted: str
    accent: str
    accent_hover: str
    accent_text: str
    hover: str
    selected: str
    input_bg: str
    bubble_in: str
    bubble_in_text: str
    bubble_out: str
    bubble_out_text: str
    bubble_out_meta: str
    link_in: str
    link_out: str
    day_pill: str
    day_pill_text: str
    badge: str
    badge_text: str
    online: str
    tor: str  # a contact reached over Tor (Tor's own purple)
    danger: str
    warning_bg: str
    warning_text: str
    highlight: str  # search hit / jump target
    scrollbar: str
    scrollbar_hover: str
    tooltip_bg: str
    tooltip_text: str

    @property
    def dark(self) -> bool:
        return self.name == "dark"

    def color(self, field: str) -> QColor:
        return QColor(getattr(self, field))


LIGHT = Theme(
    name="light",
    window="#ffffff",
    sidebar="#f7f7f8",
    surface="#ffffff",
    border="#e3e3e6",
    text="#1b1b1d",
    text_secondary="#5e5e66",
    text_muted="#8a8a93",
    accent="#2c6bed",
    accent_hover="#1f58cf",
    accent_text="#ffffff",
    hover="#ececef",
    selected="#dfe3ea",
    input_bg="#efeff2",
    bubble_in="#ececef",
    bubble_in_text="#1b1b1d",
    bubble_out="#2c6bed",
    bubble_out_text="#ffffff",
    bubble_out_meta="#dbe6ff",
    link_in="#1f58cf",
    link_out="#ffffff",
    day_pill="#f0f0f3",
    day_pill_text="#5e5e66",
    badge="#2c6bed",
    badge_text="#ffffff",
    online="#2fb457",
    tor="#7d4698",
    danger="#d92d2d",
    warning_bg="#fff4d6",
    warning_text="#6b4c00",
    highlight="#ffd54a",
    scrollbar="#c9c9cf",
    scrollbar_hover="#a9a9b1",
    tooltip_bg="#2e2e33",
    tooltip_text="#ffffff",
)

DARK = Theme(
    name="dark",
    window="#121214",
    sidebar="#1b1b1e",
    surface="#1b1b1e",
    border="#2c2c31",
    text="#e9e9ec",
    text_secondary="#b4b4bc",
    text_muted="#8b8b94",
    accent="#2c6bed",
    accent_hover="#4a82f2",
    accent_text="#ffffff",
    hover="#26262b",
    selected="#303038",
    input_bg="#2a2a2f",
    bubble_in="#2e2e33",
    bubble_in_text="#e9e9ec",
    bubble_out="#2c6bed",
    bubble_out_text="#ffffff",
    bubble_out_meta="#d2defc",
    link_in="#8db2ff",
    link_out="#ffffff",
    day_pill="#232327",
    day_pill_text="#b4b4bc",
    badge="#2c6bed",
    badge_text="#ffffff",
    online="#3fcf6a",
    tor="#b98ee0",
    danger="#ff6b6b",
    warning_bg="#3d3215",
    warning_text="#ffe1a0",
    highlight="#8a6d00",
    scrollbar="#3c3c43",
    scrollbar_hover="#55555e",
    tooltip_bg="#e9e9ec",
    tooltip_text="#1b1b1d",
)

# Avatar colours: saturated enough for white initials (contrast >= 3:1) in both themes.
AVATAR_COLORS = (
    "#e0533f",
    "#d6437a",
    "#a94cc9",
    "#7257d6",
    "#3f63d6",
    "#2f7fc7",
    "#16879c",
    "#178a6a",
    "#3f8a2c",
    "#8a7a12",
    "#c46a17",
    "#8d6e63",
)


def avatar_color(contact_id: str) -> QColor:
    """A stable colour for a contact: the same on every run and machine."""
    return QColor(AVATAR_COLORS[zlib.crc32(contact_id.encode()) % len(AVATAR_COLORS)])


def initials(name: str) -> str:
    words = [w for w in name.split() if w[:1].isalnum()]
    if not words:
        return name[:1].upper() or "?"
    if len(words) == 1:
        return words[0][:1].upper()
    return (words[0][:1] + words[-1][:1]).upper()


# -- current theme and switching ------------------------------------------------------------

_current: Theme = LIGHT


def current() -> Theme:
    return _current


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    return hints is not None and hints.colorScheme() == Qt.ColorScheme.Dark


def resolve(mode: str) -> Theme:
    if mode == "dark":
        return DARK
    if mode == "light":
        return LIGHT
    return DARK if system_is_dark() else LIGHT


class ThemeManager(QObject):
    """Owns the applied theme; re-applies it when the system scheme or the setting changes."""

    changed = Signal(object)  # Theme

    def __init__(self, app: QApplication, mode: str = "system") -> None:
        super().__init__(app)
        self._app = app
        self._mode = mode if mode in MODES else "system"
        hints = QGuiApplication.styleHints()
        if hints is not None:
            hints.colorSchemeChanged.connect(self._on_system_changed)
        self.apply()

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def theme(self) -> Theme:
        return _current

    def set_mode(self, mode: str) -> None:
        self._mode = mode if mode in MODES else "system"
        self.apply()

    def _on_system_changed(self, _scheme: object) -> None:
        if self._mode == "system":
            self.apply()

    def apply(self) -> None:
        global _current
        theme = resolve(self._mode)
        changed = theme is not _current
        _current = theme
        self._app.setPalette(palette(theme))
        self._app.setStyleSheet(style_sheet(theme))
        if changed:
            self.changed.emit(theme)


_manager: ThemeManager | None = None


def install(app: QApplication, mode: str = "system") -> ThemeManager:
    """Fusion style, the palette and style sheet of `mode`; call once after the app exists."""
    global _manager
    app.setStyle("Fusion")
    if _manager is None or _manager.parent() is not app:
        _manager = ThemeManager(app, mode)
    else:
        _manager.set_mode(mode)
    return _manager


def manager() -> ThemeManager | None:
    return _manager


def palette(t: Theme) -> QPalette:
    p = QPalette()
    c = QColor
    roles = {
        QPalette.ColorRole.Window: t.window,
        QPalette.ColorRole.WindowText: t.text,
        QPalette.ColorRole.Base: t.window,
        QPalette.ColorRole.AlternateBase: t.sidebar,
        QPalette.ColorRole.Text: t.text,
        QPalette.ColorRole.Button: t.input_bg,
        QPalette.ColorRole.ButtonText: t.text,
        QPalette.ColorRole.BrightText: t.danger,
        QPalette.ColorRole.Highlight: t.accent,
        QPalette.ColorRole.HighlightedText: t.accent_text,
        QPalette.ColorRole.PlaceholderText: t.text_muted,
        QPalette.ColorRole.ToolTipBase: t.tooltip_bg,
        QPalette.ColorRole.ToolTipText: t.tooltip_text,
        QPalette.ColorRole.Link: t.link_in,
        QPalette.ColorRole.LinkVisited: t.link_in,
        QPalette.ColorRole.Light: t.surface,
        QPalette.ColorRole.Midlight: t.hover,
        QPalette.ColorRole.Mid: t.border,
        QPalette.ColorRole.Dark: t.border,
        QPalette.ColorRole.Shadow: "#000000",
    }
    for role, value in roles.items():
        p.setColor(role, c(value))
    disabled = QPalette.ColorGroup.Disabled
    for role in (
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
    ):
        p.setColor(disabled, role, c(t.text_muted))
    p.setColor(disabled, QPalette.ColorRole.Highlight, c(t.border))
    p.setColor(QPalette.ColorGroup.Inactive, QPalette.ColorRole.Highlight, c(t.accent))
    p.setColor(QPalette.ColorRole.Accent, c(t.accent))
    return p


def style_sheet(t: Theme) -> str:
    """One sheet for the whole app. Object names and dynamic properties select the parts:
    ``QPushButton[primary="true"]`` is the accent button dialogs may use too."""
    return f"""
QWidget {{ color: {t.text}; }}
QMainWindow, QDialog {{ background: {t.window}; }}
QToolTip {{
    background: {t.tooltip_bg}; color: {t.tooltip_text}; border: none;
    padding: 4px 8px; border-radius: 6px;
}}
QSplitter::handle {{ background: {t.border}; }}

#Sidebar {{ background: {t.sidebar}; }}
#SidebarHeader {{ background: {t.sidebar}; }}
#SidebarTitle {{ font-weight: 600; }}
#ConversationList {{ background: {t.sidebar}; border: none; outline: none; }}
#EmptyList {{ color: {t.text_muted}; }}

#ChatHeader, #Composer {{ background: {t.surface}; }}
#ChatHeader {{ border-bottom: 1px solid {t.border}; }}
#Composer {{ border-top: 1px solid {t.border}; }}
#HeaderName {{ font-weight: 600; }}
#HeaderStatus, #TypingLabel, #Counter, #MutedLabel {{ color: {t.text_muted}; }}
#Counter[over="true"] {{ color: {t.danger}; font-weight: 600; }}
#HistoryView {{ background: {t.window}; border: none; outline: none; }}
#EmptyState {{ background: {t.window}; }}
#EmptyTitle {{ font-weight: 600; }}
#EmptyText {{ color: {t.text_secondary}; }}
#Banner {{ background: {t.warning_bg}; color: {t.warning_text}; }}
#Banner QLabel {{ color: {t.warning_text}; }}
#GroupList {{ background: {t.sidebar}; }}
#TorStatus {{ background: {t.sidebar}; border-top: 1px solid {t.border}; }}
#TorStatus:hover {{ background: {t.hover}; }}
#TorStatusText {{ color: {t.text_secondary}; background: transparent; }}
#TorProgress {{ background: {t.border}; border: none; border-radius: 2px; }}
#TorProgress::chunk {{ background: {t.tor}; border-radius: 2px; }}

QLineEdit, QPlainTextEdit, QTextEdit, QSpinBox, QComboBox {{
    background: {t.input_bg}; color: {t.text};
    border: 1px solid transparent; border-radius: 8px;
    padding: 5px 8px;
    selection-background-color: {t.accent}; selection-color: {t.accent_text};
}}
QLineEdit:focus, QPlainTextEdit:focus, QTextEdit:focus, QSpinBox:focus, QComboBox:focus {{
    border: 1px solid {t.accent};
}}
QLineEdit:disabled, QPlainTextEdit:disabled {{ color: {t.text_muted}; }}
#FilterBox {{ border-radius: 12px; padding: 5px 10px; min-height: 20px; }}
#ComposerEdit {{ border-radius: 18px; padding: 4px 10px; }}
#SearchBar {{ background: {t.surface}; border-bottom: 1px solid {t.border}; }}
#SearchField {{ border-radius: 12px; min-height: 20px; }}

QPushButton {{
    background: {t.input_bg}; color: {t.text}; border: none;
    border-radius: 8px; padding: 7px 16px; min-height: 20px;
}}
QPushButton:hover {{ background: {t.hover}; }}
QPushButton:pressed {{ background: {t.selected}; }}
QPushButton:focus {{ outline: none; border: 1px solid {t.accent}; }}
QPushButton:disabled {{ color: {t.text_muted}; }}
QPushButton[primary="true"] {{ background: {t.accent}; color: {t.accent_text}; font-weight: 600; }}
QPushButton[primary="true"]:hover {{ background: {t.accent_hover}; }}
QPushButton[primary="true"]:disabled {{ background: {t.border}; color: {t.text_muted}; }}
QPushButton[danger="true"] {{ color: {t.danger}; }}

QToolButton {{
    background: transparent; border: none; border-radius: 8px; padding: 6px;
}}
QToolButton:hover {{ background: {t.hover}; }}
QToolButton:pressed, QToolButton:checked {{ background: {t.selected}; }}
QToolButton:focus {{ outline: none; border: 1px solid {t.accent}; }}
QToolButton::menu-indicator {{ image: none; width: 0; }}
#SendButton {{ background: {t.accent}; border-radius: 18px; }}
#SendButton:hover {{ background: {t.accent_hover}; }}
#SendButton:disabled {{ background: {t.border}; }}
#JumpButton {{
    background: {t.surface}; border: 1px solid {t.border}; border-radius: 18px;
}}
#JumpButton:hover {{ background: {t.hover}; }}
#EmojiButton {{ font-size: 20px; padding: 2px; border-radius: 6px; }}
#EmojiPicker {{
    background: {t.surface}; border: 1px solid {t.border}; border-radius: 10px;
}}

QMenu {{
    background: {t.surface}; color: {t.text}; border: 1px solid {t.border};
    border-radius: 8px; padding: 4px;
}}
QMenu::item {{ padding: 6px 24px 6px 12px; border-radius: 6px; }}
QMenu::item:selected {{ background: {t.hover}; }}
QMenu::item:disabled {{ color: {t.text_muted}; }}
QMenu::separator {{ height: 1px; background: {t.border}; margin: 4px 8px; }}
QMenu::icon {{ padding-left: 8px; }}

QCheckBox {{ spacing: 8px; }}
QCheckBox:disabled, QRadioButton:disabled {{ color: {t.text_muted}; }}
QListView, QListWidget, QTreeView {{
    background: {t.window}; border: none; outline: none;
    selection-background-color: {t.selected}; selection-color: {t.text};
}}
QListWidget::item, QListView::item {{ border-radius: 6px; }}
QListWidget::item:hover {{ background: {t.hover}; }}
QListWidget::item:selected {{ background: {t.selected}; color: {t.text}; }}

QScrollBar:vertical {{ background: transparent; width: 10px; margin: 2px; }}
QScrollBar::handle:vertical {{
    background: {t.scrollbar}; border-radius: 3px; min-height: 32px; margin: 0 2px;
}}
QScrollBar::handle:vertical:hover {{ background: {t.scrollbar_hover}; }}
QScrollBar:horizontal {{ background: transparent; height: 10px; margin: 2px; }}
QScrollBar::handle:horizontal {{
    background: {t.scrollbar}; border-radius: 3px; min-width: 32px; margin: 2px 0;
}}
QScrollBar::add-line, QScrollBar::sub-line {{ width: 0; height: 0; }}
QScrollBar::add-page, QScrollBar::sub-page {{ background: transparent; }}
"""


# -- icons ------------------------------------------------------------------------------------


class SvgIconEngine(QIconEngine):
    """Renders an SVG at exactly the requested size and scale (crisp on HiDPI)."""

    def __init__(self, data: bytes, disabled: bytes | None = None) -> None:
        super().__init__()
        self._data = data
        self._disabled = disabled
        self._renderer = QSvgRenderer(QByteArray(data))
        self._disabled_renderer = QSvgRenderer(QByteArray(disabled)) if disabled else None

    def _renderer_for(self, mode: QIcon.Mode) -> QSvgRenderer:
        if mode == QIcon.Mode.Disabled and self._disabled_renderer is not None:
            return self._disabled_renderer
        return self._renderer

    def paint(self, painter: QPainter, rect: QRect, mode: QIcon.Mode, state: QIcon.State) -> None:
        self._renderer_for(mode).render(painter, QRectF(rect))

    def pixmap(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QPixmap:
        return self.scaledPixmap(size, mode, state, 1.0)

    def scaledPixmap(
        self, size: QSize, mode: QIcon.Mode, state: QIcon.State, scale: float
    ) -> QPixmap:
        pixmap = QPixmap(max(1, round(size.width() * scale)), max(1, round(size.height() * scale)))
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        self._renderer_for(mode).render(painter, QRectF(pixmap.rect()))
        painter.end()
        pixmap.setDevicePixelRatio(scale)
        return pixmap

    def clone(self) -> QIconEngine:
        return SvgIconEngine(self._data, self._disabled)


@functools.cache
def _svg_text(name: str) -> str:
    path = ICONS / f"{name}.svg"
    try:
        return path.read_text("utf-8")
    except OSError:
        return '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"/>'


@functools.lru_cache(maxsize=256)
def _icon(name: str, color: str, disabled: str) -> QIcon:
    text = _svg_text(name)
    return QIcon(
        SvgIconEngine(
            text.replace("currentColor", color).encode(),
            text.replace("currentColor", disabled).encode(),
        )
    )


def icon(name: str, color: str | QColor | None = None) -> QIcon:
    """One of resources/icons/*.svg, drawn in `color` (default: the theme's secondary text)."""
    t = current()
    if isinstance(color, QColor):
        color = color.name()
    return _icon(name, color or t.text_secondary, t.text_muted)


def app_icon() -> QIcon:
    try:
        data = APP_ICON.read_bytes()
    except OSError:
        return QIcon()
    return QIcon(SvgIconEngine(data))


def render_svg(data: bytes, size: int, scale: float = 1.0) -> QPixmap:
    engine = SvgIconEngine(data)
    return engine.scaledPixmap(QSize(size, size), QIcon.Mode.Normal, QIcon.State.Off, scale)


# -- fonts ------------------------------------------------------------------------------------


def scaled_font(base: QFont, factor: float, weight: QFont.Weight | None = None) -> QFont:
    font = QFont(base)
    if font.pointSizeF() > 0:
        font.setPointSizeF(font.pointSizeF() * factor)
    else:
        font.setPixelSize(max(1, round(font.pixelSize() * factor)))
    if weight is not None:
        font.setWeight(weight)
    return font


def theme_colors(t: Theme) -> dict[str, str]:
    """The theme as a plain dict (for tests and the screenshots script)."""
    return {f.name: getattr(t, f.name) for f in fields(t)}


__all__ = [
    "AVATAR_COLORS",
    "DARK",
    "LIGHT",
    "QPoint",
    "Theme",
    "ThemeManager",
    "app_icon",
    "avatar_color",
    "current",
    "icon",
    "initials",
    "install",
    "manager",
    "palette",
    "resolve",
    "scaled_font",
    "style_sheet",
]
