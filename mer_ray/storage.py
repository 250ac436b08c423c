"""Where a run keeps its files: a shared folder, or an object store (`s3://`, `gs://`) through a
local mirror.

Everything mer-ray writes is a whole file written once: feature parts, `errors.parquet`,
`meta.json`, a round's weights / probabilities / vote table, `state.json`. So an object store
serves as well as a shared disk, without a filesystem in between: every process works on a local
copy, exactly as on one machine, and uploads each file as soon as it is complete. An object PUT
is atomic, so the bucket never holds half a file, and the upload order keeps the invariants the
local code relies on (a round's files go up before the `state.json` that names it). A process
that needs files another node wrote pulls the ones it lacks (`Mirror.pull`), e.g. a rerun driver
resuming from the bucket, or a worker on a fresh node.

URIs are what pyarrow's `FileSystem.from_uri` reads, options included:
`s3://bucket/prefix?region=eu-west-1`, or for an S3-compatible server
`s3://bucket/prefix?endpoint_override=minio.local:9000&scheme=http`. Credentials come from the
usual places (environment, ~/.aws, the instance role).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

CACHE_ENV = "MER_RAY_CACHE"   # where mirrors live on every node (default ~/.cache/mer-ray)


def is_remote(location: str | os.PathLike | None) -> bool:
    """An object-store URI (s3://, gs://, ...); plain paths and file:// are local."""
    text = str(location or "")
    return "://" in text and not text.startswith("file://")


def join(location: str, *parts: str) -> str:
    """`location/part/...` for a path or a URI (options after `?` stay at the end)."""
    base, sep, query = str(location).partition("?")
    joined = "/".join([base.rstrip("/"), *[p.strip("/") for p in parts if p]])
    return joined + (sep + query if sep else "")


@dataclass(frozen=True)
class Mirror:
    """A remote folder and its local copy (the same path on every node)."""
    remote: str
    local: Path

    @classmethod
    def of(cls, remote: str) -> "Mirror":
        root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mer-ray")
        digest = hashlib.sha1(remote.encode()).hexdigest()[:12]
        return cls(remote, root / "mirror" / digest)

    @cached_property
    def _target(self):
        """(filesystem, base path without a trailing /): one client for all of this mirror's I/O."""
        import pyarrow.fs as pafs

        try:
            fs, base = pafs.FileSystem.from_uri(self.remote)
            return fs, base.rstrip("/")
        except Exception as err:
            raise ValueError(f"storage {self.remote}: cannot open it ({err}); check the URI, its region or "
                             f"endpoint options and the credentials of this node") from None

    def _remote_files(self, sub: str = "") -> dict[str, tuple[int, int]]:
        """relative path → (size, mtime in ns) of every object under `sub`."""
        import pyarrow.fs as pafs

        fs, base = self._target
        root = "/".join(p for p in (base, sub.strip("/")) if p)
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
        prefix = base + "/"
        return {i.path[len(prefix):]: (i.size, i.mtime_ns or 0) for i in infos if i.type == pafs.FileType.File}

    @staticmethod
    def _same(local: Path, remote: tuple[int, int]) -> bool:
        """Whether the local file is the remote object: content-named feature parts are written
        once, so the same size is enough; JSON state (state.json, metrics.json, meta.json) is tiny
        and may be rewritten within the second an object store's mtime resolves, so it is always
        fetched again; any other file matches when its mtime was set from the object's."""
        if not local.exists() or local.stat().st_size != remote[0] or local.suffix == ".json":
            return False
        return local.name.startswith("part-") or local.stat().st_mtime_ns == remote[1]

    def pull(self, sub: str = "", *, skip: tuple[str, ...] = ()) -> int:
        """Download the files under `sub` that differ from the remote, except those under the
        prefixes in `skip`; returns how many."""
        fs, base = self._target
        fetched = 0
        for rel, remote in sorted(self._remote_files(sub).items()):
            target = self.local / rel
            if (skip and rel.startswith(skip)) or self._same(target, remote):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
            with fs.open_input_stream(f"{base}/{rel}") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.utime(tmp, ns=(remote[1], remote[1]))
            os.replace(tmp, target)
            fetched += 1
        return fetched

    def push(self, *paths: str | Path) -> None:
        """Upload local files (absolute, or relative to the local copy) to the same relative place
        in the remote, in the order given."""
        for path in paths:
            path = Path(path)
            local = path if path.is_absolute() else self.local / path
            self.upload(local, local.resolve().relative_to(self.local.resolve()).as_posix())

    def upload(self, local: str | Path, rel: str) -> None:
        """One local file to `<remote>/<rel>` (a single PUT: readers see all of it or nothing)."""
        fs, base = self._target
        path = f"{base}/{rel}"
        with open(local, "rb") as src, fs.open_output_stream(path) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        if Path(local).resolve().is_relative_to(self.local.resolve()):
            # the local copy now is the object: take its mtime, so that `pull` knows it has it
            mtime = fs.get_file_info(path).mtime_ns or 0
            os.utime(local, ns=(mtime, mtime))

    def check(self) -> None:
        """Fail early, with the reason, when this node cannot write and read the remote (no such
        bucket, no credentials): a probe object is written, read back and deleted."""
        fs, base = self._target
        probe = f"{base}/.mer-ray-probe-{uuid.uuid4().hex}"
        try:
            with fs.open_output_stream(probe) as out:
                out.write(b"ok")
            with fs.open_input_stream(probe) as src:
                src.read()
            fs.delete_file(probe)
        except Exception as err:
            raise ValueError(f"storage {self.remote}: cannot write and read it ({err}); check that the "
                             f"bucket exists and this node's credentials can read and write it") from None

    def push_tree(self, sub: str = "", *, last: tuple[str, ...] = ()) -> int:
        """Upload every file under `sub` that differs from the remote (see `_same`); the files named
        in `last` (relative paths) go up after all the others. Returns how many went up."""
        remote = self._remote_files(sub)
        folder = self.local / sub
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".tmp")) \
            if folder.is_dir() else []
        changed = [p for p in files
                   if not self._same(p, remote.get(p.relative_to(self.local).as_posix(), (-1, 0)))]
        at_end = [p for p in changed if p.relative_to(self.local).as_posix() in last]
        self.push(*[p for p in changed if p not in at_end], *at_end)
        return len(changed)
