"""What the cache and the flows may ask of a data source, declared once (the readers are in fer.data.sources).

A reader lists a data set as a Manifest; where it reads from names its cache folder (so two copies of one data set
in different places never share a cache entry); and a source whose data comes with a labels CSV says which column
names a submission for it repeats. Readers override what applies to them; nothing is probed by attribute name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from fer.data.manifest import Manifest


class DataSource(ABC):
    name: str  # the source's kind (fer2013, challenge, ...): the first part of its cache folder's name

    @abstractmethod
    def manifest(self) -> Manifest:
        """Every image with its split and label, and how to read its pixels."""

    def location(self) -> str | None:
        """Where the data is read from (None: nowhere on disk, or many places)."""
        return None

    def submission_columns(self) -> tuple[str, str] | None:
        """The (image, label) column names its submissions use; None: the default ones."""
        return None


class FolderBasedSource(DataSource):
    """A source that reads everything under one folder or file, `root`."""

    root: str

    def location(self) -> str | None:
        return self.root
