/* Splitting an expression into tokens. */
#ifndef CALC_LEXER_H
#define CALC_LEXER_H

#include <stddef.h>

enum token_kind {
    TOKEN_NUMBER,
    TOKEN_PLUS,
    TOKEN_MINUS,
    TOKEN_STAR,
    TOKEN_SLASH,
    TOKEN_LEFT_PAREN,
    TOKEN_RIGHT_PAREN,
    TOKEN_END,
    TOKEN_INVALID
};

struct token {
    enum token_kind kind;
    double value;       /* value of a TOKEN_NUMBER, 0 for other kinds */
    const char *start;  /* the token's first character in the input */
    size_t length;      /* length of the token's text in bytes */
};

struct lexer {
    const char *input;
    const char *next;   /* first character not read yet */
};

void lexer_init(struct lexer *lexer, const char *input);

/*
 * Reads the next token, skipping white space. Returns TOKEN_END at the end
 * of the input, again on every later call, and TOKEN_INVALID for a character
 * that starts no token.
 */
struct token lexer_next(struct lexer *lexer);

/* Returns the 1-based column of a token in the lexer's input. */
size_t lexer_column(const struct lexer *lexer, const struct token *token);

/* Returns a description of a token kind for error messages, e.g. "'+'". */
const char *token_kind_name(enum token_kind kind);

#endif
