"""`chinwag-cli`: the command line (main), the local API it shares with a running peer
(api, group_api) and the control socket that serves it (control)."""
