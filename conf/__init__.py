"""Hydra configs (``train.yaml`` and its groups).

They live at the repository's top level and are installed as the package ``audiodiag.conf``
(a setuptools package-dir mapping), so every entry point finds them from any folder.
"""
