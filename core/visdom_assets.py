"""Visdom's browser assets, from the npm registry, so its page works with no internet.

Visdom 0.2.4 downloads its JavaScript, CSS and fonts from CDNs when it first
starts; offline its page stays blank. The same files are published as npm
packages: `npm pack` fetches each tarball, and the files go into the installed
package's `static/` folder. `version.built` then tells the server to skip its
own downloads. `python -m core.visdom_assets install` is idempotent.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from core.errors import UserError

log = logging.getLogger(__name__)

VISDOM_VERSION = "0.2.4"
# (npm package, file or folder in the tarball under package/, destination under static/)
ASSETS: list[tuple[str, str, str]] = [
    ("jquery@3.1.1", "dist/jquery.min.js", "js/jquery.min.js"),
    ("bootstrap@3.3.7", "dist/js/bootstrap.min.js", "js/bootstrap.min.js"),
    ("bootstrap@3.3.7", "dist/css/bootstrap.min.css", "css/bootstrap.min.css"),
    *[("bootstrap@3.3.7", f"fonts/glyphicons-halflings-regular.{ext}", f"fonts/glyphicons-halflings-regular.{ext}")
      for ext in ("eot", "woff2", "woff", "ttf")],
    ("bootstrap@3.3.7", "fonts/glyphicons-halflings-regular.svg",
     "fonts/glyphicons-halflings-regular.svg#glyphicons_halflingsregular"),
    ("react@16.2.0", "umd/react.production.min.js", "js/react-react.min.js"),
    ("react-dom@16.2.0", "umd/react-dom.production.min.js", "js/react-dom.min.js"),
    ("react-modal@3.1.10", "dist/react-modal.min.js", "js/react-modal.min.js"),
    ("plotly.js-dist-min@2.11.1", "plotly.min.js", "js/plotly-plotly.min.js"),
    ("sjcl@1.0.7", "sjcl.js", "js/sjcl.js"),
    ("layout-bin-packer@1.4.0", "dist/layout-bin-packer.js", "js/layout_bin_packer.js"),
    ("layout-bin-packer@1.4.0", "dist/layout-bin-packer.js.map", "js/layout-bin-packer.js.map"),
    ("d3@3.5.17", "d3.min.js", "js/d3.v3.min.js"),
    ("d3-selection-multi@1.0.1", "build/d3-selection-multi.js", "js/d3-selection-multi.v1.js"),
    ("save-svg-as-png@1.4.17", "lib/saveSvgAsPng.js", "js/saveSvgAsPng.js"),
    ("react-resizable@1.4.6", "css/styles.css", "css/react-resizable-styles.css"),
    ("react-grid-layout@0.16.3", "css/styles.css", "css/react-grid-layout-styles.css"),
    ("classnames@2.2.5", "index.js", "fonts/classnames"),
    ("mathjax@2.7.5", "config", "js/mathjax/2.7.5/config"),
    ("mathjax@2.7.5", "extensions", "js/mathjax/2.7.5/extensions"),
    ("mathjax@2.7.5", "jax", "js/mathjax/2.7.5/jax"),
    ("mathjax@2.7.5", "MathJax.js", "js/mathjax/2.7.5/MathJax.js"),
]


def static_dir() -> Path:
    """The installed visdom package's static/ folder (found without importing visdom's server)."""
    import importlib.util

    spec = importlib.util.find_spec("visdom")
    if spec is None or spec.origin is None:
        raise UserError("visdom is not installed: run `make setup`")
    return Path(spec.origin).parent / "static"


def missing_assets(static: Path) -> list[str]:
    """Destinations not in place yet, plus version.built when it does not match."""
    missing = [dest for _, _, dest in ASSETS if not (static / dest).exists()]
    built = static / "version.built"
    if not built.is_file() or built.read_text().strip() != VISDOM_VERSION:
        missing.append("version.built")
    return missing


def install(static: Path | None = None) -> list[str]:
    """Put every missing asset in place; returns what was installed (empty when nothing was missing)."""
    static = static or static_dir()
    missing = set(missing_assets(static))
    if not missing:
        return []
    packages = sorted({package for package, _, dest in ASSETS if dest in missing})
    if packages and shutil.which("npm") is None:
        raise UserError("npm is needed once to fetch Visdom's browser assets (apt-get install -y npm)")
    with tempfile.TemporaryDirectory() as folder:
        unpacked = {package: _unpack(package, Path(folder)) for package in packages}
        for package, source, dest in ASSETS:
            if dest in missing:
                _copy(unpacked[package] / source, static / dest)
    (static / "version.built").write_text(VISDOM_VERSION)
    return sorted(missing)


def _unpack(package: str, folder: Path) -> Path:
    """`npm pack` the package into `folder` and unpack it; returns its package/ folder."""
    target = folder / package.replace("@", "-").replace("/", "-")
    target.mkdir()
    result = subprocess.run(["npm", "pack", package, "--silent"], cwd=target, capture_output=True, text=True,
                            timeout=300)
    tarballs = list(target.glob("*.tgz"))
    if result.returncode != 0 or not tarballs:
        reason = (result.stderr.strip().splitlines() or ["no tarball"])[-1]
        raise UserError(f"npm pack {package} failed: {reason}")
    with tarfile.open(tarballs[0]) as archive:
        archive.extractall(target, filter="data")
    return target / "package"


def _copy(source: Path, dest: Path) -> None:
    if not source.exists():
        raise UserError(f"{source.name} is missing from the npm package (expected {source})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, dest, dirs_exist_ok=True)
    else:
        shutil.copyfile(source, dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.visdom_assets", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["install", "check"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.action == "check":
            missing = missing_assets(static_dir())
            print("Visdom assets: all in place" if not missing else f"Visdom assets missing: {', '.join(missing)}")
            return 1 if missing else 0
        installed = install()
        if installed:
            print(f"Visdom assets: installed {len(installed)} files from the npm registry")
        return 0
    except UserError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
