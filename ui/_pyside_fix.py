"""Work around a PySide6 6.12 reference-counting bug on Python 3.10/3.11.

PySide6 6.12.0 (an abi3 wheel for "3.10+") returns ``None`` from every void method, and
from ``QModelIndex.data()`` with no value, without taking a reference. On Python 3.12+
``None``, ``True`` and ``False`` are immortal, so nothing happens; on 3.11 each such call
takes one reference from ``None`` and the interpreter aborts ("none_dealloc: deallocating
None") once a few thousand paints have run. PySide6 6.11 does not have the bug.

`apply()` gives these singletons a reference count no program can exhaust, which is what
3.12 does for every immortal object. It does nothing on 3.12+ or with PySide6 < 6.12.
The real fix is a PySide6 without the bug (pin ``<6.12``) or Python 3.12+.
"""

from __future__ import annotations

import sys

_applied = False


def needed() -> bool:
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    try:
        import PySide6
    except ImportError:
        return False
    version = getattr(PySide6, "__version_info__", (0, 0))
    return tuple(version[:2]) >= (6, 12)


def apply() -> bool:
    """Returns True if the workaround is (now) in effect."""
    global _applied
    if _applied:
        return True
    if not needed():
        return False
    import ctypes

    for singleton in (None, True, False):
        # CPython 3.11 objects start with their Py_ssize_t reference count.
        ctypes.c_ssize_t.from_address(id(singleton)).value += 1 << 40
    _applied = True
    return True
