/*
 * calc: prints the value of each arithmetic expression given as an argument,
 * or, without arguments, of each non-blank line of standard input.
 */
#define _POSIX_C_SOURCE 200809L /* for getline */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "version.h"

/*
 * Prints the value of one expression on stdout, or an error on stderr that
 * names where the expression came from. Returns 0 on success, -1 on error.
 */
static int print_value(const char *expression, const char *source, long number)
{
    double value;
    struct eval_error error;

    if (eval_expression(expression, &value, &error) != 0) {
        fprintf(stderr, "calc: %s %ld, column %zu: %s\n", source, number, error.column, error.message);
        return -1;
    }
    printf("%.15g\n", value);
    return 0;
}

static int is_blank(const char *text)
{
    return text[strspn(text, " \t\r\n\v\f")] == '\0';
}

int main(int argc, char **argv)
{
    int status = EXIT_SUCCESS;

    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("calc %s\n", CALC_VERSION);
        return EXIT_SUCCESS;
    }
    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        printf("usage: calc [EXPRESSION...]\n"
               "Prints the value of each EXPRESSION or, with none, of each line of standard input.\n"
               "Expressions contain numbers, + - * / and parentheses.\n");
        return EXIT_SUCCESS;
    }

    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            if (print_value(argv[i], "argument", i) != 0)
                status = EXIT_FAILURE;
        }
        return status;
    }

    char *line = NULL;
    size_t capacity = 0;
    long line_number = 0;
    while (getline(&line, &capacity, stdin) != -1) {
        line_number++;
        if (!is_blank(line) && print_value(line, "line", line_number) != 0)
            status = EXIT_FAILURE;
    }
    if (ferror(stdin)) {
        perror("calc: failed to read standard input");
        status = EXIT_FAILURE;
    }
    free(line);
    if (fflush(stdout) != 0) {
        perror("calc: failed to write standard output");
        status = EXIT_FAILURE;
    }
    return status;
}
