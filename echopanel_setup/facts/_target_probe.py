"""Run *inside* the target interpreter: report package versions and a few source markers as JSON.

It never imports vllm, torch or transformers (slow, may be broken, may initialise CUDA): it reads
installed metadata and files only. Kept compatible with Python 3.8 because the target may be old.
"""

import json
import os
import re
import sys

try:
    from importlib import metadata
except ImportError:  # Python < 3.8
    metadata = None  # type: ignore[assignment]  # None: this old Python has no importlib.metadata

PACKAGES = [
    "vllm",
    "torch",
    "transformers",
    "mistral_common",
    "soxr",
    "soundfile",
    "librosa",
    "huggingface_hub",
    "flashinfer-python",
    "numpy",
]


def _dist(name):
    for candidate in (name, name.replace("_", "-"), name.replace("-", "_")):
        try:
            return metadata.distribution(candidate)
        except Exception:
            continue
    return None


def _files(dist, marker):
    for f in dist.files or []:
        path = str(f).replace("\\", "/")
        if marker in path and path.endswith(".py"):
            yield dist.locate_file(f)


def _contains(dist, file_marker, text_marker):
    """True/False when the marked files were found and read; None when there is nothing to read."""
    if dist is None:
        return None
    found = None
    for path in _files(dist, file_marker):
        try:
            with open(str(path), encoding="utf-8", errors="replace") as fh:
                found = bool(found) or text_marker in fh.read()
        except OSError:
            continue
    return found


def _torch_cuda(dist):
    if dist is None:
        return None
    for path in _files(dist, "torch/version.py"):
        try:
            with open(str(path), encoding="utf-8") as fh:
                m = re.search(r"^cuda\b[^=\n]*=\s*(?:'([^']*)'|\"([^\"]*)\"|None)", fh.read(), re.M)
        except OSError:
            return None
        if m:
            return m.group(1) or m.group(2) or None
    return None


def main():
    markers = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    out = {
        "version": ".".join(map(str, sys.version_info[:3])),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "is_venv": sys.prefix != getattr(sys, "base_prefix", sys.prefix),
        "packages": {},
    }
    dists = {}
    if metadata is not None:
        for name in PACKAGES:
            d = _dist(name)
            dists[name] = d
            out["packages"][name] = d.version if d is not None else None
    out["torch_cuda"] = _torch_cuda(dists.get("torch"))
    out["vllm_tokenizer_group_max_loras"] = _contains(
        dists.get("vllm"), markers.get("vllm_file", "\0"), markers.get("vllm_text", "\0")
    )
    out["transformers_mistral_rejects_kwargs"] = _contains(
        dists.get("transformers"), markers.get("transformers_file", "\0"), markers.get("transformers_text", "\0")
    )
    out["paths"] = _path_stamps()
    sys.stdout.write(json.dumps(out))


def _mtime_ns(st):
    """st_mtime_ns, which Python 2.7 lacks: there the probe must still report the version it found."""
    ns = getattr(st, "st_mtime_ns", None)
    return ns if ns is not None else int(st.st_mtime * 1e9)


def _path_stamps():
    """(dir, mtime_ns) of every import directory: installing or removing a package changes one of them."""
    stamps = []
    for entry in sys.path[1:]:  # sys.path[0] is this script's own directory
        try:
            if entry and os.path.isdir(entry):
                stamps.append([entry, _mtime_ns(os.stat(entry))])
        except OSError:
            continue
    return stamps


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
