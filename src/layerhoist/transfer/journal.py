"""The upload journal: how far each resumable upload got, kept so that a killed run resumes it.

The pipeline records, per destination and blob digest, the upload's session (ECR's upload id,
an OCI registry's upload URL) and part size when the upload starts, then each part the service
acknowledged: where it ends and the xxh3 of its bytes. A committed blob (or one found already
present) is forgotten. The next run over the same destination finds the entry, asks the
destination to resume that session, and re-reads the journaled prefix from the source: every
part must hash to its journaled xxh3 (and the whole blob to its sha256, as always) before the
upload continues where the service says it stands; anything else starts the blob afresh.

:class:`UploadJournal` is the protocol the pipeline talks to; it knows no storage. The state
file implements it (:class:`layerhoist.state.journal.StateJournal`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

#: Hex digits of a journaled xxh3 (a 64-bit digest).
XXH3_HEX_DIGITS = 16


def xxh3_hex(fingerprint: int) -> str:
    """The journal's form of an xxh3 fingerprint: 16 lowercase hex digits."""
    return f"{fingerprint:0{XXH3_HEX_DIGITS}x}"


@dataclass(frozen=True, slots=True)
class JournaledPart:
    """A part the service acknowledged: bytes ``[0, end)`` are in the upload."""

    #: The part's place in the blob (0-based); parts are cut every ``part_size`` bytes.
    index: int
    #: Offset just past the part's last byte.
    end: int
    #: xxh3 of the whole part as read from the source (:func:`xxh3_hex`).
    xxh3: str
    #: The session to continue from after this part (an OCI upload URL changes per PATCH).
    session: str


@dataclass(frozen=True)
class JournalEntry:
    """One upload in flight as journaled: its session, part size and acknowledged parts."""

    destination: str
    digest: str
    #: The session as the upload started (ECR: the upload id; OCI: the upload URL).
    session: str
    part_size: int
    #: Acknowledged parts in order, from the first.
    parts: tuple[JournaledPart, ...] = ()

    @property
    def acknowledged(self) -> int:
        """Bytes the service acknowledged, as journaled."""
        return self.parts[-1].end if self.parts else 0

    @property
    def latest_session(self) -> str:
        """The session to resume: the one the last acknowledged part left."""
        return self.parts[-1].session if self.parts else self.session

    @property
    def fingerprints(self) -> list[int]:
        """The journaled xxh3 of each part, as :class:`~layerhoist.transfer.parts.PartReader`
        compares them."""
        return [int(part.xxh3, 16) for part in self.parts]


class UploadJournal(Protocol):
    """Where the pipeline journals resumable uploads; each call is one small, durable write.

    Calls are synchronous: each is a single short statement, cheaper than a hop to a thread.
    ``destination`` is the destination's description, ``digest`` the blob's.
    """

    def pending(self, destination: str) -> Mapping[str, JournalEntry]:
        """The uploads journaled for ``destination``, by blob digest."""
        ...

    def started(self, destination: str, digest: str, *, session: str, part_size: int) -> None:
        """An upload began: it replaces any entry of the blob, parts included."""
        ...

    def acknowledged(self, destination: str, digest: str, part: JournaledPart) -> None:
        """The service accepted ``part`` (a part journaled before under its index is replaced)."""
        ...

    def truncate(self, destination: str, digest: str, *, parts: int) -> None:
        """Keep only the first ``parts`` parts: the service holds less than was journaled."""
        ...

    def forget(self, destination: str, digest: str) -> None:
        """The blob landed (or was there already): drop its entry."""
        ...
