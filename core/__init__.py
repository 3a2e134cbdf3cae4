"""Pure decisions shared by every layer, no I/O, standard library only (DESIGN.md's layout)."""
