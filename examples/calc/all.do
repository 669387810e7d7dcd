# The default target of a bare "redo" in this directory.
redo-ifchange calc
