/*
 * gs_json.c -- JSON text helpers shared by the json_* UDFs (no SQL symbols).
 *
 * gs_json_escape: string escaping and UTF-8 repair, see gs_json.h.
 * gs_json_double/int/decimal/arg: values by UDF argument type.
 * gs_json_key: member names from argument attributes (aliases).
 */
#include "gs_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* 0: copy as is; 1: needs escaping (control, quote, backslash); 2: non-ASCII */
static const unsigned char gs_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20 '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x5c '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x7f stays */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

static const char gs_hex[] = "0123456789abcdef";

/*
 * Length of the well-formed UTF-8 sequence at s (1..4), or, when ill-formed,
 * minus the length of its maximal ill-formed subpart (-1..-3).
 */
static int gs_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    int need, i;

    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return -1; /* 0x80..0xC1, 0xF5..0xFF */

    for (i = 1; i <= need; i++) {
        if ((size_t)i >= n || s[i] < lo || s[i] > hi)
            return -i;
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

int gs_json_escape(gs_buf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    if (gs_buf_reserve(b, n + 2))
        return -1;
    b->data[b->len++] = '"';
    while (i < n) {
        size_t run = i;
        unsigned char c;

        while (run < n && gs_class[s[run]] == 0)
            run++;
        if (run > i) {
            if (gs_buf_reserve(b, run - i + 1))
                return -1;
            memcpy(b->data + b->len, s + i, run - i);
            b->len += run - i;
            i = run;
            if (i == n)
                break;
        }
        if (gs_buf_reserve(b, 7)) /* longest piece (\u00XX or \ufffd) + '"' */
            return -1;
        c = s[i];
        if (gs_class[c] == 1) {
            char *o = b->data + b->len;
            char e = 0;
            switch (c) {
            case '"': e = '"'; break;
            case '\\': e = '\\'; break;
            case '\b': e = 'b'; break;
            case '\t': e = 't'; break;
            case '\n': e = 'n'; break;
            case '\f': e = 'f'; break;
            case '\r': e = 'r'; break;
            default: break;
            }
            o[0] = '\\';
            if (e) {
                o[1] = e;
                b->len += 2;
            } else {
                o[1] = 'u';
                o[2] = '0';
                o[3] = '0';
                o[4] = gs_hex[c >> 4];
                o[5] = gs_hex[c & 15];
                b->len += 6;
            }
            i++;
        } else {
            int k = gs_utf8_seq(s + i, n - i);
            if (k > 0) {
                memcpy(b->data + b->len, s + i, (size_t)k);
                b->len += (size_t)k;
                i += (size_t)k;
            } else {
                memcpy(b->data + b->len, "\\ufffd", 6);
                b->len += 6;
                i += (size_t)(-k);
            }
        }
    }
    if (gs_buf_reserve(b, 1))
        return -1;
    b->data[b->len++] = '"';
    return 0;
}

int gs_json_int(gs_buf *b, long long v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%lld", v);
    return gs_buf_append(b, tmp, (size_t)n);
}

int gs_json_double(gs_buf *b, double v)
{
    char tmp[40];
    int n = 0, prec, k;

    if (!isfinite(v))
        return gs_buf_append(b, "null", 4);
    for (prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (prec == 17 || strtod(tmp, NULL) == v)
            break;
    }
    /* The decimal point is locale-dependent in printf; JSON wants '.'.
       %g output is otherwise made only of digits, sign, 'e'. */
    for (k = 0; k < n; k++) {
        char c = tmp[k];
        if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e'))
            tmp[k] = '.';
    }
    return gs_buf_append(b, tmp, (size_t)n);
}

/* RFC 8259: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int gs_is_json_number(const char *s, size_t n)
{
    size_t i = 0, d;

    if (i < n && s[i] == '-')
        i++;
    if (i >= n)
        return 0;
    if (s[i] == '0')
        i++;
    else if (s[i] >= '1' && s[i] <= '9') {
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    } else
        return 0;
    if (i < n && s[i] == '.') {
        i++;
        for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            ;
        if (i == d)
            return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            ;
        if (i == d)
            return 0;
    }
    return i == n;
}

int gs_json_decimal(gs_buf *b, const char *s, size_t n)
{
    if (gs_is_json_number(s, n))
        return gs_buf_append(b, s, n);
    return gs_json_escape(b, s, n);
}

int gs_json_arg(gs_buf *b, const UDF_ARGS *args, unsigned i)
{
    const char *v = args->args[i];

    if (v == NULL)
        return gs_buf_append(b, "null", 4);
    switch (args->arg_type[i]) {
    case INT_RESULT:
        return gs_json_int(b, *(const long long *)v);
    case REAL_RESULT:
        return gs_json_double(b, *(const double *)v);
    case DECIMAL_RESULT:
        return gs_json_decimal(b, v, args->lengths[i]);
    case STRING_RESULT:
    default:
        return gs_json_escape(b, v, args->lengths[i]);
    }
}

static int gs_ident_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '$' || c >= 0x80;
}

/*
 * If a[0..n) is a dotted identifier path -- parts made of identifier bytes
 * or `backtick quoted` (with `` for a backtick), separated by '.' -- set
 * *start and *end to its last part (inside backticks if quoted) and return 1.
 */
static int gs_last_ident(const char *a, size_t n, size_t *start, size_t *end)
{
    size_t i = 0;

    if (n == 0)
        return 0;
    for (;;) {
        size_t s, e;
        if (a[i] == '`') {
            s = ++i;
            for (;;) {
                if (i >= n)
                    return 0;
                if (a[i] == '`') {
                    if (i + 1 < n && a[i + 1] == '`') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i++;
            }
            e = i++;
        } else {
            s = i;
            while (i < n && gs_ident_byte((unsigned char)a[i]))
                i++;
            e = i;
            if (e == s)
                return 0;
        }
        if (i == n) {
            *start = s;
            *end = e;
            return 1;
        }
        if (a[i] != '.' || i + 1 == n)
            return 0;
        i++;
    }
}

void gs_json_key(const UDF_ARGS *args, unsigned i, const char **key,
                 size_t *len)
{
    const char *a = args->attributes ? args->attributes[i] : NULL;
    size_t n = a ? args->attribute_lengths[i] : 0;
    size_t s, e;

    if (a == NULL) {
        *key = "";
        *len = 0;
        return;
    }
    if (gs_last_ident(a, n, &s, &e)) {
        *key = a + s;
        *len = e - s;
    } else {
        *key = a;
        *len = n;
    }
}

/* ------------------------------------------------ strict JSON validator */

typedef struct {
    const unsigned char *s;
    size_t n, i;
    int depth;
} gs_jp;

static void gs_jp_ws(gs_jp *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' ||
                           p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int gs_hexdig(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
           (c >= 'A' && c <= 'F');
}

static int gs_jp_string(gs_jp *p)
{
    if (p->i >= p->n || p->s[p->i] != '"')
        return 0;
    p->i++;
    while (p->i < p->n) {
        unsigned char c = p->s[p->i];
        if (c == '"') {
            p->i++;
            return 1;
        }
        if (c < 0x20)
            return 0;
        if (c == '\\') {
            if (++p->i >= p->n)
                return 0;
            c = p->s[p->i];
            if (c == 'u') {
                int k;
                for (k = 1; k <= 4; k++)
                    if (p->i + k >= p->n || !gs_hexdig(p->s[p->i + k]))
                        return 0;
                p->i += 5;
            } else if (c == '"' || c == '\\' || c == '/' || c == 'b' ||
                       c == 'f' || c == 'n' || c == 'r' || c == 't') {
                p->i++;
            } else
                return 0;
        } else if (c >= 0x80) {
            int k = gs_utf8_seq(p->s + p->i, p->n - p->i);
            if (k <= 0)
                return 0;
            p->i += (size_t)k;
        } else
            p->i++;
    }
    return 0;
}

static int gs_jp_value(gs_jp *p);

static int gs_jp_container(gs_jp *p, unsigned char close)
{
    if (++p->depth > GS_JSON_MAX_DEPTH)
        return 0;
    p->i++; /* [ or { */
    gs_jp_ws(p);
    if (p->i < p->n && p->s[p->i] == close) {
        p->i++;
        p->depth--;
        return 1;
    }
    for (;;) {
        if (close == '}') {
            if (!gs_jp_string(p))
                return 0;
            gs_jp_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':')
                return 0;
            p->i++;
            gs_jp_ws(p);
        }
        if (!gs_jp_value(p))
            return 0;
        gs_jp_ws(p);
        if (p->i >= p->n)
            return 0;
        if (p->s[p->i] == close) {
            p->i++;
            p->depth--;
            return 1;
        }
        if (p->s[p->i] != ',')
            return 0;
        p->i++;
        gs_jp_ws(p);
    }
}

static int gs_jp_value(gs_jp *p)
{
    unsigned char c;

    if (p->i >= p->n)
        return 0;
    c = p->s[p->i];
    if (c == '{')
        return gs_jp_container(p, '}');
    if (c == '[')
        return gs_jp_container(p, ']');
    if (c == '"')
        return gs_jp_string(p);
    if (c == 't' || c == 'f' || c == 'n') {
        const char *lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
        size_t len = strlen(lit);
        if (p->n - p->i < len || memcmp(p->s + p->i, lit, len) != 0)
            return 0;
        p->i += len;
        return 1;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        size_t start = p->i;
        while (p->i < p->n &&
               ((p->s[p->i] >= '0' && p->s[p->i] <= '9') || p->s[p->i] == '-' ||
                p->s[p->i] == '+' || p->s[p->i] == '.' || p->s[p->i] == 'e' ||
                p->s[p->i] == 'E'))
            p->i++;
        return gs_is_json_number((const char *)p->s + start, p->i - start);
    }
    return 0;
}

int gs_json_valid(const char *s, size_t n, int shape)
{
    gs_jp p = {(const unsigned char *)s, n, 0, 0};

    if (s == NULL)
        return 0;
    gs_jp_ws(&p);
    for (;;) {
        if (shape == GS_JV_MEMBERS) {
            if (!gs_jp_string(&p))
                return 0;
            gs_jp_ws(&p);
            if (p.i >= p.n || p.s[p.i] != ':')
                return 0;
            p.i++;
            gs_jp_ws(&p);
        }
        if (!gs_jp_value(&p))
            return 0;
        gs_jp_ws(&p);
        if (p.i == p.n)
            return 1;
        if (shape == GS_JV_VALUE || p.s[p.i] != ',')
            return 0;
        p.i++;
        gs_jp_ws(&p);
    }
}

int gs_json_nest_requested(const UDF_ARGS *args, unsigned i)
{
    const char *a;
    size_t n;

    if (args->args[i] == NULL || args->arg_type[i] != STRING_RESULT)
        return 0;
    gs_json_key(args, i, &a, &n); /* t.json_data -> json_data */
    if (n >= 5 && strncasecmp(a, "json_", 5) == 0)
        return 1;
    return n >= 9 && strncasecmp(a, "udf_json_", 9) == 0;
}

int gs_json_raw(gs_buf *b, const char *s, size_t n)
{
    while (n > 0 && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
        s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' ||
                     s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    return gs_buf_append(b, s, n);
}
