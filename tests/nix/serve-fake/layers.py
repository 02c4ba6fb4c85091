# Builder of nixery.nix's fake layers: deterministic gzip'd tars, a Docker config and
# manifest, and Nixery's layerLocations, all in $out (manifest.json on one line).
import base64, gzip, hashlib, io, json, os, tarfile, time

out = os.environ["out"]
os.makedirs(out)
time.sleep(int(os.environ["sleep"]))
packages = os.environ["packages"].split()


def tar(entries):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            elif kind == "link":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, data, 0o777
                t.addfile(info)
            else:
                info.size, info.mode = len(data), 0o755
                t.addfile(info, io.BytesIO(data))
    plain = raw.getvalue()
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as g:
        g.write(plain)
    return plain, packed.getvalue()


with open("/bin/busybox", "rb") as f:
    busybox = f.read()
layers = [
    tar([("bin", "dir", None), ("bin/busybox", "file", busybox), ("bin/sh", "link", "busybox")]),
    tar([
        ("bin", "dir", None),
        ("bin/hello", "file", b"#!/bin/sh\necho 'Hello, world!'\n"),
        ("etc", "dir", None),
        ("etc/packages", "file", ("\n".join(packages) + "\n").encode()),
    ]),
]
config = json.dumps({
    "architecture": os.environ["arch"],
    "os": "linux",
    "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"]},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(p).hexdigest() for p, _ in layers]},
}, separators=(",", ":")).encode()

locations = {}


def blob(data):
    hex = hashlib.sha256(data).hexdigest()
    path = os.path.join(out, hex)
    with open(path, "wb") as f:
        f.write(data)
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    locations[hex] = {"sha256": hex, "md5": md5, "size": len(data), "path": path}
    return {"digest": "sha256:" + hex, "size": len(data)}


manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": dict(mediaType="application/vnd.docker.container.image.v1+json", **blob(config)),
    "layers": [dict(mediaType="application/vnd.docker.image.rootfs.diff.tar.gzip", **blob(g)) for _, g in layers],
}
with open(os.path.join(out, "manifest.json"), "w") as f:
    f.write(json.dumps({"manifest": manifest, "layerLocations": locations}) + "\n")
