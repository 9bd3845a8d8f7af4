"""The error of the readers: a file that cannot be read as tomography data."""

from __future__ import annotations

__all__ = ["TomoFormatError"]


class TomoFormatError(ValueError):
    """A file that cannot be read as tomography data; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
