"""Build hook for the native KVM engine; everything else is in pyproject.toml.

`cffi_modules` compiles native/vmm into `ktstr_vmm._kvm`. Without a C compiler (or on a
host without <linux/kvm.h>) the install still succeeds and says why the KVM engine is
missing; KvmEngine then raises an EngineError with the same fix. Set KTSTR_REQUIRE_KVM=1
to make a failed build fatal.
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

FIX = ("ktstr: the KVM engine (ktstr_vmm._kvm) was not built: {why}. "
       "Install a C compiler and kernel headers (apt-get install gcc linux-libc-dev) and "
       "re-run `pip install -e .`; the QEMU engine works without it.")


class OptionalBuildExt(build_ext):
    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001 - compiler errors come in several families
            if os.environ.get("KTSTR_REQUIRE_KVM") == "1":
                raise
            first = (str(e).splitlines() or [""])[0]
            if "Command '[" in first:  # distutils quotes the whole compiler command line
                first = first.split("Command '[")[0] + "the compiler command failed"
            msg = FIX.format(why=f"{type(e).__name__}: {first[:200]}".strip())
            sys.stderr.write(msg + "\n")
            self.warn(msg)


setup(
    cffi_modules=["native/vmm/build_ffi.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
)
