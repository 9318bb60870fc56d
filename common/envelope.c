/* envelope: see envelope.h. */
#include "common/envelope.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int envelope_add_rcpt(struct envelope *env, const char *addr, const char *orcpt, uint8_t notify)
{
	if (env->nrcpts == env->rcpts_cap) {
		uint32_t cap = env->rcpts_cap ? env->rcpts_cap * 2 : 4;
		struct envelope_rcpt *r = realloc(env->rcpts, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		env->rcpts = r;
		env->rcpts_cap = cap;
	}
	struct envelope_rcpt *r = &env->rcpts[env->nrcpts];
	r->addr = strdup(addr);
	r->orcpt = dup_or_null(orcpt);
	r->notify = notify;
	if (!r->addr || (orcpt && !r->orcpt)) {
		free(r->addr);
		free(r->orcpt);
		return -ENOMEM;
	}
	env->nrcpts++;
	return 0;
}

void envelope_free(struct envelope *env)
{
	for (uint32_t i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].orcpt);
	}
	free(env->rcpts);
	free(env->sender);
	free(env->envid);
	free(env->helo);
	free(env->client_addr);
	memset(env, 0, sizeof(*env));
}

/* Index 0 is "unknown"; the spool stores the index, so only append. */
static const char *const protocol_names[] = {"", "SMTP", "ESMTP", "UTF8SMTP", "UTF8ESMTP"};

const char *envelope_protocol_name(unsigned id)
{
	if (id >= sizeof(protocol_names) / sizeof(protocol_names[0]))
		return "";
	return protocol_names[id];
}

unsigned envelope_protocol_id(const char *name)
{
	if (!name)
		return 0;
	for (unsigned i = 1; i < sizeof(protocol_names) / sizeof(protocol_names[0]); i++)
		if (strcmp(name, protocol_names[i]) == 0)
			return i;
	return 0;
}
