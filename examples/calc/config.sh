# Compiler settings, read by default.o.do and calc.do. Both scripts
# redo-ifchange this file, so editing it rebuilds every object and the program.
CC=gcc
CFLAGS='-Wall -Wextra -O2'
LDFLAGS=
LDLIBS=
