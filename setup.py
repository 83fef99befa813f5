"""Maps the design card's root folders onto the ``visloupe`` namespace.

``core/`` installs as ``visloupe.core`` and ``widgets/`` as ``visloupe.widgets``; ``visloupe``
itself is an implicit namespace package, so nothing named bare ``core`` or ``widgets`` lands in
site-packages. Metadata lives in pyproject.toml.
"""

from setuptools import find_packages, setup

FOLDERS = {"visloupe.core": "core", "visloupe.widgets": "widgets"}


def _packages() -> list[str]:
    names = []
    for package, folder in FOLDERS.items():
        names.append(package)
        names += [f"{package}.{sub}" for sub in find_packages(folder)]
    return names


setup(packages=_packages(), package_dir=FOLDERS)
