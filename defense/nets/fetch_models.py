"""Put the BadNets into ROOT/models: copied from a local mirror, else downloaded from the
competition's public repository, each checked (sha256 where known, always the DeepID
structure) before it replaces anything."""

import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from ..atomic import atomic_path
from ..digest import file_sha256
from ..errors import InputError
from .fast_net import ensure_artefact
from ..layout import SHARED_ASSETS, models_dir
from .model_io import read_weights
from .registry import NETS

DEFAULT_MIRROR = SHARED_ASSETS
DOWNLOAD_TIMEOUT_S = 60


def add_arguments(parser):
    parser.add_argument("--root", type=Path, metavar="DIR",
                        help="project root; models go to ROOT/models (default: this repository)")
    parser.add_argument("--mirror", type=Path, metavar="DIR", default=DEFAULT_MIRROR,
                        help="local copy of the published files, laid out as ../shared/csaw "
                             "(models/, lab3/); default: %(default)s")
    parser.add_argument("--full-models", action="store_true",
                        help="also fetch the full-model *_bd_net.h5 files (download only; "
                             "the weight files are enough to run everything)")
    parser.add_argument("--nets", nargs="+", choices=sorted(NETS), default=sorted(NETS),
                        metavar="NET", help=f"which nets (default: all: {', '.join(sorted(NETS))})")


def run(args):
    failures = 0
    for name in args.nets:
        spec = NETS[name]
        files = [(spec.bad_weights_file, spec.weights_sha256)]
        if args.full_models:
            files.append((spec.bad_net_file, None))
        for file_name, sha256 in files:
            try:
                fetch_file(spec, file_name, sha256, models_dir(args.root), args.mirror)
                ensure_artefact(models_dir(args.root) / file_name, prog="fetch-models")
            except InputError as e:
                print(f"fetch-models: error: {e}", file=sys.stderr)
                failures += 1
    return 2 if failures else 0


def fetch_file(spec, file_name, sha256, destination_dir, mirror):
    """Bring one file to destination_dir unless an identical, valid one is there."""
    destination = Path(destination_dir) / file_name
    if destination.exists() and _is_good(destination, sha256):
        print(f"{destination}: up to date", file=sys.stderr)
        return
    local = Path(mirror) / spec.mirror_dir / file_name if mirror else None
    with atomic_path(destination) as tmp:
        if local and local.is_file():
            shutil.copyfile(local, tmp)
            origin = str(local)
        else:
            origin = spec.download_url(file_name)
            _download(origin, tmp)
        digest = file_sha256(tmp)
        if sha256 and digest != sha256:
            raise InputError(f"{origin}: sha256 {digest} differs from the published {sha256}")
        read_weights(tmp)  # refuses anything that is not a DeepID model file
    check = "sha256 verified" if sha256 else "no published digest; structure checked"
    print(f"{destination}: from {origin} ({check})", file=sys.stderr)


def _is_good(path, sha256):
    if sha256:
        return file_sha256(path) == sha256
    try:
        read_weights(path)
        return True
    except InputError:
        return False


def _download(url, path):
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, \
                open(path, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as e:
        raise InputError(f"cannot download {url} ({getattr(e, 'reason', e)}); copy the file "
                         "by hand into models/ or pass --mirror DIR") from None

