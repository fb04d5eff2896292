"""Replay: the pure core over the archived log (or the topic from offset 0) with any rules
version into a fresh projection store, the rule-change diff, and the GC pause around folds."""
