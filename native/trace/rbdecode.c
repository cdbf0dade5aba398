/*
 * rbdecode: the host's fast path for decoding ftrace ring-buffer pages into the trace's
 * 32-byte records (ktstr_vmm/ftrace.py is the reference decoder and documents the format;
 * ktstr_vmm/ftrace_native.py builds this file with gcc and calls it through ctypes).
 *
 * Input: whole pages of one CPU, the page layout, and a table of event plans indexed by
 * event id (what to copy into each record slot). Output: records, task-name updates
 * (pid + comm, in order; the last one wins) and a result per page. Nothing in the input
 * is trusted: every read is bounds-checked against the page's committed data.
 */
#include <stdint.h>
#include <string.h>

#define TYPE_PADDING 29
#define TYPE_TIME_EXTEND 30
#define TYPE_TIME_STAMP 31
#define TYPE_DATA_MAX 28
#define MISSED_EVENTS (1ull << 31)
#define MISSED_STORED (1ull << 30)
#define COMMIT_MASK ((1ull << 30) - 1)
#define KIND_OTHER 9

struct field {
	int16_t off;  /* -1 = absent */
	uint8_t size; /* 1, 2, 4, 8 */
	uint8_t sign;
};

struct plan {
	uint16_t kind; /* 0 = no plan for this id */
	uint16_t min_len;
	struct field slot[4];  /* pid, a, b, c */
	int16_t comm_slot[2];  /* which slot holds the pid a comm belongs to, -1 = none */
	int16_t comm_off[2];
	uint16_t comm_size[2];
};

struct rec {
	uint64_t ts;
	uint16_t kind, cpu;
	int32_t pid, a, b, c;
	uint32_t id;
};

struct comm {
	int32_t pid;
	char name[16];
};

struct page_result {
	uint32_t events;
	int32_t err_offset; /* -1: the page decoded cleanly */
	uint32_t err_code;  /* 1 record length < 4, 2 record runs past the data, 3 commit past the page */
	uint32_t err_len;   /* the bad record's claimed length (code 2) */
	uint64_t missed;    /* events the kernel lost before this page (stored count) */
	uint32_t missed_unknown;
	uint32_t unknown;   /* records with no plan */
	uint64_t last_ts;
	uint64_t commit_past; /* non-zero: the commit (this many bytes) runs past the page */
	uint32_t backwards;   /* records earlier than the record before them (this call) */
	uint32_t pad;
};

static inline uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static inline int64_t rdf(const uint8_t *p, struct field f)
{
	switch (f.size) {
	case 1: return f.sign ? (int64_t)(int8_t)p[0] : (int64_t)p[0];
	case 2: { uint16_t v; memcpy(&v, p, 2); return f.sign ? (int64_t)(int16_t)v : (int64_t)v; }
	case 4: { uint32_t v; memcpy(&v, p, 4); return f.sign ? (int64_t)(int32_t)v : (int64_t)v; }
	case 8: { uint64_t v; memcpy(&v, p, 8); return (int64_t)v; }
	}
	return 0;
}

static inline int32_t clamp32(int64_t v)
{
	return v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int32_t)v;
}

/* Returns the number of records written (at most max_recs; the caller sizes it from the
 * data: a record takes at least 8 bytes of a page). comms: at most max_comms entries,
 * *ncomms set; a direct-mapped cache suppresses repeats of the same name. */
long rb_decode(const uint8_t *data, long npages, long page_size, int commit_off,
	       int commit_size, int data_off, const struct plan *plans, long nplans, int cpu,
	       struct rec *recs, long max_recs, struct comm *comms, long max_comms, long *ncomms,
	       struct page_result *results)
{
	static struct comm cache[4096];
	long n = 0, nc = 0;
	uint64_t prev = 0;

	memset(cache, 0, sizeof(cache));
	for (long k = 0; k < npages; k++) {
		const uint8_t *pg = data + k * page_size;
		struct page_result *res = &results[k];
		uint64_t ts, commit = 0, size;
		long pos, end;

		memset(res, 0, sizeof(*res));
		res->err_offset = -1;
		memcpy(&ts, pg, 8);
		memcpy(&commit, pg + commit_off, commit_size > 8 ? 8 : commit_size);
		size = commit & COMMIT_MASK;
		pos = data_off;
		end = data_off + (long)size;
		if (commit & MISSED_EVENTS) {
			if ((commit & MISSED_STORED) && end + 8 <= page_size)
				memcpy(&res->missed, pg + end, 8);
			else
				res->missed_unknown = 1;
		}
		if (end > page_size) {
			res->commit_past = size;
			end = page_size;
		}
		while (pos + 4 <= end) {
			uint32_t h = rd32(pg + pos), tl = h & 31, delta = h >> 5;
			long body, nxt;

			if (tl == 0) {
				uint32_t length;

				if (pos + 8 > end)
					break;
				length = rd32(pg + pos + 4);
				if (length < 4) {
					res->err_offset = (int32_t)pos;
					res->err_code = 1;
					res->err_len = length;
					break;
				}
				body = pos + 8;
				nxt = pos + 4 + (long)length;
			} else if (tl <= TYPE_DATA_MAX) {
				body = pos + 4;
				nxt = pos + 4 + (long)tl * 4;
			} else if (tl == TYPE_PADDING) {
				if (delta == 0 || pos + 8 > end)
					break;
				ts += delta;
				pos = pos + 4 + (long)rd32(pg + pos + 4);
				continue;
			} else if (tl == TYPE_TIME_EXTEND) {
				if (pos + 8 > end)
					break;
				ts += ((uint64_t)rd32(pg + pos + 4) << 27) + delta;
				pos += 8;
				continue;
			} else {
				if (pos + 8 > end)
					break;
				ts = (ts & ~((1ull << 59) - 1)) | ((uint64_t)rd32(pg + pos + 4) << 27) | delta;
				pos += 8;
				continue;
			}
			if (nxt > end) {
				res->err_offset = (int32_t)pos;
				res->err_code = 2;
				res->err_len = (uint32_t)(nxt - pos);
				break;
			}
			ts += delta;
			{
				uint16_t id = (uint16_t)(pg[body] | pg[body + 1] << 8);
				const struct plan *pl = id < nplans ? &plans[id] : NULL;

				if (!pl || !pl->kind) {
					res->unknown++;
				} else if (nxt - body >= pl->min_len && n < max_recs) {
					struct rec *r = &recs[n++];
					int32_t v[4] = { 0, 0, 0, 0 };

					for (int s = 0; s < 4; s++)
						if (pl->slot[s].off >= 0)
							v[s] = clamp32(rdf(pg + body + pl->slot[s].off, pl->slot[s]));
					if (pl->kind == KIND_OTHER)
						v[0] = (int32_t)rd32(pg + body + 4);
					if (ts < prev)
						res->backwards++;
					prev = ts;
					r->ts = ts;
					r->kind = pl->kind;
					r->cpu = (uint16_t)cpu;
					r->pid = v[0];
					r->a = v[1];
					r->b = v[2];
					r->c = v[3];
					r->id = id;
					res->events++;
					for (int c = 0; c < 2; c++) {
						struct comm *e;
						const uint8_t *nm;
						int32_t pid;
						size_t len;

						if (pl->comm_slot[c] < 0)
							continue;
						pid = v[pl->comm_slot[c]];
						nm = pg + body + pl->comm_off[c];
						len = pl->comm_size[c] < 16 ? pl->comm_size[c] : 16;
						e = &cache[(uint32_t)pid & 4095];
						if (e->pid == pid && !memcmp(e->name, nm, len))
							continue;
						e->pid = pid;
						memset(e->name, 0, 16);
						memcpy(e->name, nm, len);
						if (nc < max_comms)
							comms[nc++] = *e;
					}
				}
			}
			pos = nxt;
		}
		res->last_ts = ts;
	}
	*ncomms = nc;
	return n;
}
