"""One exception type for every mistake a user can make: the CLI prints it as one line."""

from __future__ import annotations


class GancliError(Exception):
    """Bad input or missing files: shown as `error: <message>` on stderr, exit code 2."""


class WriteError(GancliError):
    """A file could not be written (disk full, no permission, a file-size limit): which file
    and the OS's reason, so whoever catches it can add what is still intact."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"cannot write {path}: {reason}")
        self.path, self.reason = path, reason

    @classmethod
    def of(cls, exc: OSError, path: object = None) -> WriteError:
        """From an OSError: the file it names (or `path`) and its reason."""
        return cls(exc.filename or path, exc.strerror or str(exc))
