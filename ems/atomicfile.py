"""Replace a file atomically: readers see the old file or the new one, never half of either.

The data goes to a temp file beside the target, then ``os.replace`` puts
it in place.  ``durable`` also fsyncs the file and its folder, so the new
content survives a power cut once the call returns (the mode store needs
that; a cache does not, and a gateway's flash is spared the fsyncs).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_atomically(path: Path, data: bytes, durable: bool) -> None:
    """Write ``data`` to ``path`` through a temp file (``.<name>.*.tmp``, removed on failure); raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsync_dir(path.parent)
