"""Windows, dialogs and delegates of the desktop app (one module per thing shown)."""
