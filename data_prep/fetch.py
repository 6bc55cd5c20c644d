"""Resumable, verified downloads: HTTP Range into ``DEST.part``, checksum, then rename to DEST.

Why: hg38.fa.gz is about 1 GB; an interrupted transfer resumes where it stopped instead of
starting over, and nothing reaches the final name until its checksum (when one is known)
matches. ``file://`` URLs are supported (resuming by seeking), which is how the tests and
offline mirrors use it.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed (network, HTTP status) or its checksum did not match."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the expected checksum; nothing was kept."""


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _open(url: str, offset: int, timeout: float) -> tuple[object, int | None, bool]:
    """Open ``url`` from byte ``offset``: (stream, total size or None, resumed?)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        path = Path(urllib.request.url2pathname(parsed.path))
        if not path.is_file():
            raise DownloadError(f"{url}: file not found")
        handle = open(path, "rb")
        size = path.stat().st_size
        resumed = 0 < offset <= size
        handle.seek(offset if resumed else 0)
        return handle, size, resumed
    request = urllib.request.Request(url, headers={"User-Agent": "dnadiff-data-prep"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return None, offset, True
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(f"{url}: {getattr(err, 'reason', err)}") from None
    resumed = offset > 0 and response.status == 206
    length = response.headers.get("Content-Length")
    total = None
    if length is not None:
        total = int(length) + (offset if resumed else 0)
    return response, total, resumed


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Fetch ``url`` to ``dest``, resuming ``dest.part`` and verifying sha256/md5 when given.

    An existing ``dest`` whose checksum matches (or, with no checksum, any existing ``dest``) is
    kept as is. On a checksum mismatch the partial file is deleted and :class:`ChecksumError`
    raised; ``dest`` is never written half-way.
    """
    dest = Path(dest)
    expected = [(a, h.lower()) for a, h in (("sha256", sha256), ("md5", md5)) if h]
    if dest.is_file():
        if all(file_digest(dest, a) == h for a, h in expected):
            return dest
        raise ChecksumError(f"{dest} exists but does not match the expected checksum; delete it to download again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    stream, total, resumed = _open(url, offset, timeout)
    if stream is not None:
        mode = "ab" if resumed else "wb"
        done = offset if resumed else 0
        with stream, open(part, mode) as out, tqdm(
            total=total, initial=done, unit="B", unit_scale=True, desc=dest.name, disable=not progress
        ) as bar:
            try:
                for chunk in iter(lambda: stream.read(CHUNK), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
            except OSError as err:
                raise DownloadError(f"{url}: transfer interrupted ({err}); run again to resume from {part}") from None
        if total is not None and part.stat().st_size != total:
            raise DownloadError(
                f"{url}: got {part.stat().st_size} of {total} bytes; run again to resume from {part}"
            )
    for algorithm, hexdigest in expected:
        got = file_digest(part, algorithm)
        if got != hexdigest:
            part.unlink()
            raise ChecksumError(f"{url}: {algorithm} {got} != expected {hexdigest}; the partial file was deleted")
    os.replace(part, dest)
    return dest

