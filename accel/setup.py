"""Build of the ndckpt_accel extension: one C99 file, no dependency but a C compiler."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ndckpt_accel",
            sources=["src/ndckpt_accel.c"],
            extra_compile_args=["-O3", "-std=c99"],
        )
    ],
)
