/* A growing JSON text buffer: just enough to build the agent's messages.
 * Commas are placed automatically: every value or key after the first in an object or
 * array gets one. Allocation failure leaves `oom` set and the text short; the sender
 * then reports an agent error instead of a broken message. */
#ifndef KTSTR_JSON_H
#define KTSTR_JSON_H

#include <stddef.h>
#include <stdint.h>

struct jbuf {
	char *s;
	size_t len, cap;
	int oom;
};

void jb_init(struct jbuf *j);
void jb_free(struct jbuf *j);
void jb_open(struct jbuf *j, char c);   /* '{' or '[' */
void jb_close(struct jbuf *j, char c);  /* '}' or ']' */
void jb_key(struct jbuf *j, const char *key);
void jb_str(struct jbuf *j, const char *s);
void jb_strn(struct jbuf *j, const char *s, size_t n);
void jb_u64(struct jbuf *j, uint64_t v);
void jb_i64(struct jbuf *j, int64_t v);
void jb_bool(struct jbuf *j, int v);
void jb_double(struct jbuf *j, double v);
/* key + value in one call */
void jb_kstr(struct jbuf *j, const char *key, const char *s);
void jb_ku64(struct jbuf *j, const char *key, uint64_t v);
void jb_ki64(struct jbuf *j, const char *key, int64_t v);

#endif
