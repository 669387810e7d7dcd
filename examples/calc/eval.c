/*
 * A recursive-descent evaluator for this grammar:
 *
 *     expression = term { ("+" | "-") term }
 *     term       = factor { ("*" | "/") factor }
 *     factor     = ("+" | "-") factor | number | "(" expression ")"
 */
#include "eval.h"
#include "lexer.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>

/* Limits the recursion of parse_factor, so "((((..." cannot overflow the stack. */
#define MAX_NESTING 1000

struct parser {
    struct lexer lexer;
    struct token current;
    struct eval_error *error;
    int failed;
    int nesting;        /* number of parse_factor calls in progress */
};

/* Records an error at a token. Only the first one is kept, because later ones follow from it. */
static void fail(struct parser *parser, const struct token *token, const char *message)
{
    if (parser->failed)
        return;
    parser->failed = 1;
    parser->error->column = lexer_column(&parser->lexer, token);
    snprintf(parser->error->message, sizeof parser->error->message, "%s", message);
}

static void fail_expected(struct parser *parser, const char *expected)
{
    char message[sizeof parser->error->message];
    const struct token *found = &parser->current;

    if (found->kind == TOKEN_INVALID && isprint((unsigned char)*found->start))
        snprintf(message, sizeof message, "invalid character '%c'", *found->start);
    else if (found->kind == TOKEN_INVALID)
        snprintf(message, sizeof message, "invalid byte 0x%02X", (unsigned)(unsigned char)*found->start);
    else
        snprintf(message, sizeof message, "expected %s, found %s", expected, token_kind_name(found->kind));
    fail(parser, found, message);
}

static void advance(struct parser *parser)
{
    parser->current = lexer_next(&parser->lexer);
}

static double parse_expression(struct parser *parser);

static double parse_factor(struct parser *parser);

static double parse_signed_or_primary(struct parser *parser)
{
    struct token token = parser->current;

    switch (token.kind) {
    case TOKEN_PLUS:
        advance(parser);
        return parse_factor(parser);
    case TOKEN_MINUS:
        advance(parser);
        return -parse_factor(parser);
    case TOKEN_NUMBER:
        if (!isfinite(token.value))
            fail(parser, &token, "number out of range");
        advance(parser);
        return token.value;
    case TOKEN_LEFT_PAREN: {
        advance(parser);
        double value = parse_expression(parser);
        if (parser->current.kind == TOKEN_RIGHT_PAREN)
            advance(parser);
        else
            fail_expected(parser, "')'");
        return value;
    }
    default:
        fail_expected(parser, "a number or '('");
        return 0.0;
    }
}

static double parse_factor(struct parser *parser)
{
    if (parser->nesting >= MAX_NESTING) {
        fail(parser, &parser->current, "expression nested too deeply");
        return 0.0;
    }
    parser->nesting++;
    double value = parse_signed_or_primary(parser);
    parser->nesting--;
    return value;
}

static double parse_term(struct parser *parser)
{
    double value = parse_factor(parser);

    while (parser->current.kind == TOKEN_STAR || parser->current.kind == TOKEN_SLASH) {
        struct token op = parser->current;
        advance(parser);
        double right = parse_factor(parser);
        if (op.kind == TOKEN_STAR) {
            value *= right;
        } else if (right == 0.0) {
            fail(parser, &op, "division by zero");
            return 0.0;
        } else {
            value /= right;
        }
        if (!isfinite(value))
            fail(parser, &op, "result out of range");
    }
    return value;
}

static double parse_expression(struct parser *parser)
{
    double value = parse_term(parser);

    while (parser->current.kind == TOKEN_PLUS || parser->current.kind == TOKEN_MINUS) {
        struct token op = parser->current;
        advance(parser);
        double right = parse_term(parser);
        value = op.kind == TOKEN_PLUS ? value + right : value - right;
        if (!isfinite(value))
            fail(parser, &op, "result out of range");
    }
    return value;
}

int eval_expression(const char *input, double *value, struct eval_error *error)
{
    struct parser parser = { .error = error, .failed = 0, .nesting = 0 };

    lexer_init(&parser.lexer, input);
    advance(&parser);
    double result = parse_expression(&parser);
    if (parser.current.kind != TOKEN_END)
        fail_expected(&parser, "an operator");
    if (parser.failed)
        return -1;

    /* Store 0, not -0, for results such as "0 * -1", so that calc prints "0". */
    *value = result == 0.0 ? 0.0 : result;
    return 0;
}
