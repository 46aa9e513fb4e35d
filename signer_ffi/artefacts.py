"""A participant policy: sign a digest only if it is the SHA-256 of the artefact it names.

A request carries a digest, not the artefact, so by default a participant cannot tell
what it signs. A participant that can read the artefacts (e.g. a read-only mount of the
report store) is given that store's root (`TRADETAPE_SIGNER_ARTEFACT_ROOT`); it then
refuses any request that names no artefact, names one outside the root, or whose digest
is not the SHA-256 of the named file's bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from schemas.events import SigningRequested

ROOT_ENV = "TRADETAPE_SIGNER_ARTEFACT_ROOT"
CHUNK = 1 << 20


@dataclass(frozen=True)
class ArtefactStore:
    """The artefacts a participant can read and recompute digests from."""

    root: Path

    def problem(self, req: SigningRequested) -> str | None:
        """Why the request's digest is not its artefact's SHA-256, or None."""
        if req.artefact is None:
            return "this signer recomputes digests and the request names no artefact"
        root = self.root.resolve()
        path = (root / req.artefact).resolve()
        if not path.is_relative_to(root):
            return f"artefact {req.artefact!r} is outside the artefact store"
        try:
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
        except OSError as exc:
            return f"artefact {req.artefact!r} cannot be read: {exc.strerror or exc}"
        if digest.hexdigest() != req.digest_hex:
            return f"the digest is not the SHA-256 of artefact {req.artefact!r}"
        return None
