"""One exception type for every mistake a user can make: the CLI prints it as one line."""


class GancliError(Exception):
    """Bad input or missing files: shown as `error: <message>` on stderr, exit code 2."""
