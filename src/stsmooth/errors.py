"""The one exception type the command line reports as a single line (exit status 2).

Faults of the input or of the machine that a user fixes without reading a
traceback (a torn checkpoint, a full disk, an undecodable image) are raised as
:class:`StsmoothError`; ``stsmooth`` prints ``stsmooth: error: <message>`` and exits 2.
"""

from __future__ import annotations


class StsmoothError(Exception):
    """A fault of the input or the environment, told in one line that says what to do."""
