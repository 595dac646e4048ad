"""The PySide6 desktop front end (see ui/app.py)."""
