"""OCI image layouts for the registry tests, built without a daemon: tar, gzip and JSON.

    build_image(dest_dir, marker, extra_files=None, tag="1", layers=1) -> dict
    build_random_image(dest_dir, total_size, layer_size=50 MiB, tag="1", seed=None) -> dict

Both write (or add a tag to) an OCI image layout that `skopeo copy oci:<dir>:<tag> ...` pushes and
`umoci unpack --image <dir>:<tag>` unpacks, and return the digests a test compares with what a
registry serves: {"manifest", "config", "layers" (compressed, in order), "diff_ids", "size", "dir",
"tag"}. Every byte is deterministic (times, owners and gzip headers are zero), so the same call
gives the same digests; only a random image without a seed differs from run to run.
"""

import gzip
import hashlib
import io
import json
import os
import platform
import random
import tarfile
from pathlib import Path

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "cat", "id", "echo", "ls")
MIB = 1024 * 1024

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it on to `sink`."""

    def __init__(self, sink):
        self.sink, self.sha, self.size = sink, hashlib.sha256(), 0

    def writable(self):
        return True

    def write(self, data):
        self.sha.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)

    def digest(self):
        return "sha256:" + self.sha.hexdigest()


def _blobs(layout: Path) -> Path:
    path = layout / "blobs" / "sha256"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _put_blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (_blobs(layout) / digest).write_bytes(data)
    return "sha256:" + digest, len(data)


def _tar_info(name, kind=tarfile.REGTYPE, mode=0o644, size=0, target=""):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, target
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def _write_layer(layout: Path, entries, compresslevel=6) -> dict:
    """Writes one gzip-compressed tar layer from `entries` (an iterable of (TarInfo, file object or
    None)) straight into the layout's blobs; its descriptor, plus its diff_id."""
    partial = _blobs(layout) / f".partial-{os.getpid()}-{os.urandom(4).hex()}"
    with open(partial, "wb") as out:
        compressed = _Hashing(out)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=compresslevel, mtime=0, filename="") as gz:
            plain = _Hashing(gz)
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for info, content in entries:
                    tar.addfile(info, content)
    digest = compressed.digest()
    partial.rename(_blobs(layout) / digest.split(":")[1])
    return {"mediaType": LAYER, "digest": digest, "size": compressed.size, "diff_id": plain.digest()}


def _files(files: dict[str, bytes], made=()):
    """Tar entries for `files` (path -> content), with their parent directories (but those in
    `made`) first; files under bin/ are executable."""
    made = set(made)
    for path, content in files.items():
        path = path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in made:
                made.add(parent)
                yield _tar_info(parent, tarfile.DIRTYPE, 0o755), None
        mode = 0o755 if path.startswith("bin/") else 0o644
        yield _tar_info(path, mode=mode, size=len(content)), io.BytesIO(content)


def _busybox_entries(marker: str, extra_files, doomed: bool):
    size = os.path.getsize(BUSYBOX)
    yield _tar_info("bin", tarfile.DIRTYPE, 0o755), None
    with open(BUSYBOX, "rb") as f:
        yield _tar_info("bin/busybox", mode=0o755, size=size), f
    for applet in APPLETS:
        yield _tar_info(f"bin/{applet}", tarfile.SYMTYPE, 0o777, target="busybox"), None
    files = {"marker.txt": f"{marker}\n".encode(), **(extra_files or {})}
    if doomed:
        files["doomed.txt"] = b"the second layer deletes this file\n"
    yield from _files(files, made={"bin"})


def _architecture():
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _finish(layout: Path, layers: list[dict], tag: str, config_extra: dict) -> dict:
    """Writes the config, the manifest, `oci-layout`, and `index.json` with `tag` (replacing an
    entry of that tag, keeping the others); the digests."""
    config = {
        "created": "1970-01-01T00:00:00Z",
        "architecture": _architecture(),
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], **config_extra},
        "rootfs": {"type": "layers", "diff_ids": [layer["diff_id"] for layer in layers]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "oci_image.py"} for _ in layers],
    }
    config_digest, config_size = _put_blob(layout, json.dumps(config, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{k: layer[k] for k in ("mediaType", "digest", "size")} for layer in layers],
    }
    manifest_digest, manifest_size = _put_blob(layout, json.dumps(manifest, separators=(",", ":")).encode())
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index_path = layout / "index.json"
    entries = json.loads(index_path.read_text())["manifests"] if index_path.exists() else []
    entries = [e for e in entries if e.get("annotations", {}).get(REF_NAME) != tag]
    entries.append({"mediaType": MANIFEST, "digest": manifest_digest, "size": manifest_size,
                    "annotations": {REF_NAME: tag}})
    index_path.write_text(json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}))
    return {"manifest": manifest_digest, "config": config_digest, "layers": [layer["digest"] for layer in layers],
            "diff_ids": [layer["diff_id"] for layer in layers],
            "size": manifest_size + config_size + sum(layer["size"] for layer in layers),
            "dir": str(layout), "tag": tag}


def build_image(dest_dir: Path, marker: str, extra_files: dict[str, bytes] | None = None, tag: str = "1",
                layers: int = 1) -> dict:
    """A busybox image at `dest_dir` (an OCI layout, created or added to) under `tag`: /bin/busybox,
    /bin/{sh,cat,id,echo,ls} linked to it, /marker.txt holding `marker` and a newline, and
    `extra_files` (path -> bytes). Cmd is ["/bin/sh"], no Entrypoint. With `layers=2` the first
    layer also holds /doomed.txt and a second layer deletes it with a whiteout (`.wh.doomed.txt`)
    and adds /layer2.txt. Returns the digests (see the module's docstring)."""
    assert layers in (1, 2), "one layer, or two with a whiteout"
    layout = Path(dest_dir)
    layout.mkdir(parents=True, exist_ok=True)
    written = [_write_layer(layout, _busybox_entries(marker, extra_files, doomed=layers == 2))]
    if layers == 2:
        written.append(_write_layer(layout, [
            (_tar_info(".wh.doomed.txt"), io.BytesIO(b"")),
            *_files({"layer2.txt": b"from the second layer\n"}),
        ]))
    return _finish(layout, written, tag, {"Cmd": ["/bin/sh"]})


def build_random_image(dest_dir: Path, total_size: int, layer_size: int = 50 * MIB, tag: str = "1",
                       seed: int | None = None) -> dict:
    """An image of `total_size` random bytes in layers of `layer_size` (the last one smaller if it
    does not divide), each layer one file `/random-<n>.bin`, for transfer benchmarks: e.g.
    200 MiB in four 50 MiB layers. The layers are gzip with stored (uncompressed) blocks, so no
    time goes into compressing random bytes and skopeo still pushes them as they are. With
    `seed` the bytes (and digests) repeat from run to run; without, they are new each time."""
    layout = Path(dest_dir)
    layout.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed) if seed is not None else None
    sizes = [layer_size] * (total_size // layer_size) + ([total_size % layer_size] if total_size % layer_size else [])
    written = []
    for n, size in enumerate(sizes):
        content = rng.randbytes(size) if rng else os.urandom(size)
        info = _tar_info(f"random-{n}.bin", size=size)
        written.append(_write_layer(layout, [(info, io.BytesIO(content))], compresslevel=0))
    return _finish(layout, written, tag, {"Cmd": ["/bin/sh"]})
