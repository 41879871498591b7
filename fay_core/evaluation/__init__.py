"""``fay eval``: test suites for a persona, run through the product's own path.

A suite (:mod:`.spec`) names a persona and its cases; the :class:`~.runner.Evaluator` runs each case in new
sessions built by the assembly and checks what the turns reported (:mod:`.checks`, and with an LLM
:mod:`.judge`); :mod:`.report` prints the table or the JSON; :mod:`.cli` is the command. Nothing is imported
here, so that ``fay`` starts fast: import from the modules.
"""
