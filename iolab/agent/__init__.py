"""``iolab agent``: the probe on the server's host, read-only, behind a bearer token (docs/agent.md)."""
