"""Build of the ndckpt_accel extension: one C99 file, no dependency but a C compiler."""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """-O3 lets gcc and clang vectorise the byte loops; MSVC gets its own optimisation flag."""

    def build_extensions(self) -> None:
        msvc = self.compiler.compiler_type == "msvc"
        for ext in self.extensions:
            ext.extra_compile_args = ["/O2"] if msvc else ["-O3", "-std=c99"]
        super().build_extensions()


setup(
    ext_modules=[Extension("ndckpt_accel", sources=["src/ndckpt_accel.c"])],
    cmdclass={"build_ext": BuildExt},
)
