"""The design card's folders installed under one import namespace, ``ilif_deploy``.

The package list is computed from the folders, so a new subpackage cannot be left out of the wheel;
everything else is declared in pyproject.toml.
"""
from setuptools import find_packages, setup

#: import name -> folder in the repository
FOLDERS = {"ilif_deploy": "ilif_deploy", "ilif_deploy.converters": "converters", "ilif_deploy.energy": "energy",
           "ilif_deploy.examples": "examples"}

PACKAGES = [pkg for name, folder in FOLDERS.items() for pkg in [name] + [f"{name}.{p}" for p in find_packages(folder)]]
# the bundled models: a data-only package
setup(packages=PACKAGES + ["ilif_deploy.examples.models"], package_dir=FOLDERS,
      package_data={"ilif_deploy.examples.models": ["*.pt"]})
