"""Fay's built-in plugins. Each registers through the ``fay`` entry-point group, exactly like a third-party one."""
