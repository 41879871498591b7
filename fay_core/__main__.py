"""``python -m fay_core`` is the ``fay`` command."""

from .cli import main

main()
