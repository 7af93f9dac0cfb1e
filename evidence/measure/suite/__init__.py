"""The suite: one module per measurement id, named after it (``refusal_direction.py`` is ``refusal.direction``).

Every module here is imported, and so registered, on first use of the
registry (:func:`evidence.measure.registered`). A suite module imports only
the framework (:mod:`evidence.measure`) and :mod:`evidence.measure.methods`.
"""
