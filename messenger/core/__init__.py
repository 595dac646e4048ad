"""What every worker shares: the ports they are wired with, group commit, text rules."""
