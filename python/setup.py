"""Build step of the wheel: compile libtabcache with cargo and ship it inside the package.

The crate is the folder above this one (override with TABCACHE_CRATE_DIR). The cargo profile
is `release` unless TABCACHE_CARGO_PROFILE says otherwise (the test script uses `dev` to reuse
the debug build the Rust tests made). The header include/tabcache.h is copied beside the
library: the package generates its cffi cdef from it at import time.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

HERE = Path(__file__).resolve().parent
CRATE = Path(os.environ.get("TABCACHE_CRATE_DIR", HERE.parent)).resolve()


def crate_version():
    text = (CRATE / "Cargo.toml").read_text(encoding="utf-8")
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    return re.search(r'^version\s*=\s*"([^"]+)"', package, re.M).group(1)


def library_name():
    if sys.platform == "win32":
        return "tabcache.dll"
    if sys.platform == "darwin":
        return "libtabcache.dylib"
    return "libtabcache.so"


class BuildWithLibrary(build_py):
    """build_py that also builds and copies libtabcache and tabcache.h into the package."""

    def run(self):
        super().run()
        profile = os.environ.get("TABCACHE_CARGO_PROFILE", "release")
        cargo = os.environ.get("CARGO", "cargo")
        command = [cargo, "build", "--lib", "--profile", profile, "--manifest-path", str(CRATE / "Cargo.toml")]
        self.announce("running " + " ".join(command), level=2)
        try:
            subprocess.run(command, check=True)
        except FileNotFoundError:
            sys.exit("error: cargo is required to build tabagent_model_cache (install Rust with rustup)")
        target_dir = Path(os.environ.get("CARGO_TARGET_DIR", CRATE / "target"))
        built = target_dir / ("debug" if profile == "dev" else profile) / library_name()
        package_dir = Path(self.build_lib) / "tabagent_model_cache"
        package_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, package_dir / library_name())
        shutil.copyfile(CRATE / "include" / "tabcache.h", package_dir / "tabcache.h")


class BinaryDistribution(Distribution):
    """The wheel holds a native library, so it is platform-specific."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    """Tag py3-none-<platform>: the library is loaded with cffi's ABI mode, so the wheel works
    with any Python 3 on that platform."""

    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    version=crate_version(),
    distclass=BinaryDistribution,
    cmdclass={"build_py": BuildWithLibrary, "bdist_wheel": PlatformWheel},
)
