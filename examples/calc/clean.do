# Remove everything the other .do scripts generate.
rm -f calc *.o *.d version.h
