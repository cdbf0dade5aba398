typedef unsigned long long u64;
typedef unsigned int u32;
enum mode { MODE_IDLE = 0, MODE_BUSY = 3 };
struct flags { u32 a:3, b:5; u32 c; };
struct task_ctx {
	u64 vtime;
	int delta;
	_Bool boosted;
	char comm[16];
	enum mode mode;
	struct flags f;
	union { u32 as_u32; unsigned char bytes[4]; };
	void *owner;
	u32 hist[3];
};
struct task_ctx ctx_one;
u64 nr_dispatched = 0;
int verbose = 1;
const volatile u32 slice_us = 5000;
