/* Evaluating arithmetic expressions. */
#ifndef CALC_EVAL_H
#define CALC_EVAL_H

#include <stddef.h>

struct eval_error {
    size_t column;      /* 1-based column where the error was found */
    char message[128];
};

/*
 * Evaluates an expression of numbers, + - * / (binary, and + - as unary
 * signs) and parentheses, with the usual precedence. Returns 0 and stores
 * the result in *value, or returns -1 and fills *error when the expression
 * is invalid, divides by zero, or a number or partial result is too large
 * for a double.
 */
int eval_expression(const char *input, double *value, struct eval_error *error);

#endif
