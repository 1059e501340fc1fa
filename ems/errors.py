"""Error types the CLI turns into exit statuses."""


class UsageError(Exception):
    """Bad input the user can correct (unknown site, bad option value): exit status 2."""
