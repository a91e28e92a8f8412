"""Build kernaio._kernaio (setuptools declares C extensions here; the metadata is in pyproject.toml).

This directory is the `kernaio` package itself, so `package_dir` maps the package to ".",
and `python setup.py build_ext --inplace` drops _kernaio*.so next to __init__.py.
One extension: src/_kernaio.c (the module's init), src/aio_context.c (the kernel AIO backend),
src/uring_context.c (the io_uring backend, through liburing: Debian's liburing-dev), src/slots.c (the slot table both context
types share), src/request.c (the Request type, checked in C) and the C engine: src/engine.c
and src/engine_type.c (the Engine type), src/file.c (File's read/readinto/write) and
src/awaitable.c (a Request as the coroutine its caller awaits).
"""
from setuptools import Extension, setup  # type: ignore[import-untyped]

setup(
    packages=["kernaio"],
    package_dir={"kernaio": "."},
    package_data={"kernaio": ["py.typed", "_kernaio.pyi"]},
    ext_modules=[
        Extension(
            "kernaio._kernaio",
            sources=["src/_kernaio.c", "src/aio_context.c", "src/uring_context.c", "src/slots.c", "src/request.c",
                     "src/awaitable.c", "src/engine.c", "src/engine_type.c", "src/file.c"],
            depends=["src/kernaio.h"],
            libraries=["uring"],
            extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-Werror"],
        )
    ],
)
