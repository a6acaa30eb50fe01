"""Adapters of the core :class:`stsmooth.Teacher` to other training frameworks.

Each submodule imports its framework only when it is itself imported, so the
package stays usable without them:

- :mod:`stsmooth.integrations.lightning` -- ``TeacherCallback`` for PyTorch Lightning
  (``pip install 'stsmooth[lightning]'``).
"""
