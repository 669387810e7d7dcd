#include "lexer.h"

#include <ctype.h>
#include <stdlib.h>

void lexer_init(struct lexer *lexer, const char *input)
{
    lexer->input = input;
    lexer->next = input;
}

static struct token make_token(enum token_kind kind, const char *start, size_t length)
{
    struct token token = { kind, 0.0, start, length };
    return token;
}

struct token lexer_next(struct lexer *lexer)
{
    while (isspace((unsigned char)*lexer->next))
        lexer->next++;

    const char *start = lexer->next;
    if (*start == '\0')
        return make_token(TOKEN_END, start, 0);

    if (isdigit((unsigned char)*start) || *start == '.') {
        char *end;
        double value = strtod(start, &end);
        if (end == start) /* a lone '.' */
            return make_token(TOKEN_INVALID, start, 1);
        lexer->next = end;
        struct token token = make_token(TOKEN_NUMBER, start, (size_t)(end - start));
        token.value = value;
        return token;
    }

    enum token_kind kind;
    switch (*start) {
    case '+': kind = TOKEN_PLUS; break;
    case '-': kind = TOKEN_MINUS; break;
    case '*': kind = TOKEN_STAR; break;
    case '/': kind = TOKEN_SLASH; break;
    case '(': kind = TOKEN_LEFT_PAREN; break;
    case ')': kind = TOKEN_RIGHT_PAREN; break;
    default: return make_token(TOKEN_INVALID, start, 1);
    }
    lexer->next++;
    return make_token(kind, start, 1);
}

size_t lexer_column(const struct lexer *lexer, const struct token *token)
{
    return (size_t)(token->start - lexer->input) + 1;
}

const char *token_kind_name(enum token_kind kind)
{
    switch (kind) {
    case TOKEN_NUMBER: return "a number";
    case TOKEN_PLUS: return "'+'";
    case TOKEN_MINUS: return "'-'";
    case TOKEN_STAR: return "'*'";
    case TOKEN_SLASH: return "'/'";
    case TOKEN_LEFT_PAREN: return "'('";
    case TOKEN_RIGHT_PAREN: return "')'";
    case TOKEN_END: return "the end of the input";
    case TOKEN_INVALID: return "an invalid character";
    }
    return "an unknown token";
}
