/* What the guest sees of itself, for SysRdy: kernel release, CPU topology from sysfs,
 * RAM ranges from /proc/iomem, and the kallsyms entries the host asked for. */
#ifndef KTSTR_SYSINFO_H
#define KTSTR_SYSINFO_H

#include "json.h"
#include "spec.h"

void sysinfo_json(const struct spec *s, struct jbuf *j);

#endif
