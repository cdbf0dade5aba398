#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jb_init(struct jbuf *j)
{
	memset(j, 0, sizeof(*j));
}

void jb_free(struct jbuf *j)
{
	free(j->s);
	jb_init(j);
}

static void put(struct jbuf *j, const char *s, size_t n)
{
	if (j->oom)
		return;
	if (j->len + n + 1 > j->cap) {
		size_t cap = j->cap ? j->cap : 256;
		char *ns;

		while (j->len + n + 1 > cap)
			cap *= 2;
		ns = realloc(j->s, cap);
		if (!ns) {
			j->oom = 1;
			return;
		}
		j->s = ns;
		j->cap = cap;
	}
	memcpy(j->s + j->len, s, n);
	j->len += n;
	j->s[j->len] = '\0';
}

/* A comma unless this is the first item of its container or the value after a key. */
static void sep(struct jbuf *j)
{
	char last;

	if (!j->len)
		return;
	last = j->s[j->len - 1];
	if (last != '{' && last != '[' && last != ':')
		put(j, ",", 1);
}

void jb_open(struct jbuf *j, char c)
{
	sep(j);
	put(j, &c, 1);
}

void jb_close(struct jbuf *j, char c)
{
	put(j, &c, 1);
}

void jb_key(struct jbuf *j, const char *key)
{
	jb_str(j, key);
	put(j, ":", 1);
}

void jb_strn(struct jbuf *j, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t start = 0;

	sep(j);
	put(j, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[7];
		size_t elen = 0;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			elen = 2;
		} else if (c == '\n') {
			memcpy(esc, "\\n", 2);
			elen = 2;
		} else if (c == '\t') {
			memcpy(esc, "\\t", 2);
			elen = 2;
		} else if (c < 0x20 || c == 0x7f) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			elen = 6;
		}
		/* Bytes >= 0x80 pass through: the host decodes UTF-8 and replaces bad bytes. */
		if (elen) {
			put(j, s + start, i - start);
			put(j, esc, elen);
			start = i + 1;
		}
	}
	put(j, s + start, n - start);
	put(j, "\"", 1);
}

void jb_str(struct jbuf *j, const char *s)
{
	jb_strn(j, s ? s : "", s ? strlen(s) : 0);
}

void jb_u64(struct jbuf *j, uint64_t v)
{
	char b[24];
	int n = snprintf(b, sizeof(b), "%llu", (unsigned long long)v);

	sep(j);
	put(j, b, (size_t)n);
}

void jb_i64(struct jbuf *j, int64_t v)
{
	char b[24];
	int n = snprintf(b, sizeof(b), "%lld", (long long)v);

	sep(j);
	put(j, b, (size_t)n);
}

void jb_bool(struct jbuf *j, int v)
{
	sep(j);
	put(j, v ? "true" : "false", v ? 4 : 5);
}

void jb_double(struct jbuf *j, double v)
{
	char b[40];
	int n = snprintf(b, sizeof(b), "%.3f", v);

	sep(j);
	put(j, b, (size_t)n);
}

void jb_kstr(struct jbuf *j, const char *key, const char *s)
{
	jb_key(j, key);
	jb_str(j, s);
}

void jb_ku64(struct jbuf *j, const char *key, uint64_t v)
{
	jb_key(j, key);
	jb_u64(j, v);
}

void jb_ki64(struct jbuf *j, const char *key, int64_t v)
{
	jb_key(j, key);
	jb_i64(j, v);
}
