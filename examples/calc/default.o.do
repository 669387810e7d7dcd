# Compile $2.c into $2.o (for example lexer.c into lexer.o).
. ./config.sh
redo-ifchange config.sh "$2.c"

# gcc stops at a missing header, and the header list below comes from a
# successful compile, so a header that a .do script generates must be built
# before gcc runs. Name it here for each source that includes it, directly
# or through another header.
case $2 in
main) redo-ifchange version.h ;;
esac

# -MD makes gcc write, while it compiles, a make rule that lists the source
# and every header it read. The rule is only needed until the headers are
# recorded below, so remove the file on exit, whether or not gcc succeeds.
deps=$2.d
trap 'rm -f "$deps"' EXIT
$CC $CFLAGS -MD -MF "$deps" -c -o "$3" "$2.c"

# The rule looks like this, where TARGET is the temporary output file $3:
#     TARGET: lexer.c lexer.h /usr/include/stdlib.h \
#      /usr/include/x86_64-linux-gnu/bits/libc-header-start.h ...
# Drop the "TARGET:" prefix of the first line and the backslash at the end of
# each continued line. The shell then splits the rest into file names, and
# set -f keeps it from expanding any of them as a glob pattern.
# NOTE: a header name that contains white space would be split wrongly (gcc
# writes it with a backslash before each space); no header here has one.
set -f
redo-ifchange $(sed -e '1s/^[^:]*://' -e 's/\\$//' "$deps")
