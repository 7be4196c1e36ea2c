"""What pyproject.toml cannot say declaratively: the package map and the C extension.

One import name, ``cnnserve``: the folders the project started with stay at the top of the tree
and are mapped into the namespace here (``server/`` is ``cnnserve.server``, and so on), so a wheel
installs ``cnnserve`` and nothing else beside its dist-info. The subpackages are found, not
listed, so a new folder with an ``__init__.py`` needs no edit here.

``cnnserve.go._fastgo`` computes the Go rules and the policy network's 48 feature planes (see
cnnserve/go/_fastgo.c); it needs a C compiler and the Python headers at install time (gcc and
python3-dev on Debian; the Dockerfile's build stage installs them).
"""

from setuptools import Extension, find_packages, setup

# The top-level folders that import as cnnserve.<folder>.
MAPPED = ("builders", "client", "server")

packages = find_packages(include=["cnnserve", "cnnserve.*"])
for folder in MAPPED:
    packages += [f"cnnserve.{folder}"] + [f"cnnserve.{folder}.{sub}" for sub in find_packages(folder)]

setup(
    packages=packages,
    package_dir={f"cnnserve.{folder}": folder for folder in MAPPED},
    # The weights cnnserve ships, their provenance and the held-out games that check them.
    package_data={"cnnserve.builders": ["*.txt", "trained/*.pt", "trained/*.json", "trained/*/*.sgf"]},
    ext_modules=[
        Extension(
            "cnnserve.go._fastgo",
            sources=["cnnserve/go/_fastgo.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ],
)
