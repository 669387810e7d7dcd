# Link the calc program from its objects.
objects='main.o lexer.o eval.o'

. ./config.sh
redo-ifchange config.sh $objects
$CC $LDFLAGS -o "$3" $objects $LDLIBS
