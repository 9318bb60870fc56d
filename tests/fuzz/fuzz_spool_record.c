/*
 * fuzz_spool_record: libFuzzer harness for the spool record parser.
 *
 * Invariants checked (abort on violation, not only "no crash"):
 *  - spool_record_parse never reads outside the input (ASan: the input is
 *    an exact-size heap copy);
 *  - a record that parses re-serialises (spool_record_build) to exactly the
 *    input bytes, and its body is the input's tail;
 *  - a failed parse leaves the envelope zeroed (nothing to free, no leak).
 * Each input is tried twice: as is (the CRC and length gate), and with the
 * length and CRC fixed up, so the fuzzer reaches the field parser.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/crc32c.h"
#include "../../queue/spool_pvt.h"

static void check_roundtrip(const uint8_t *rec, size_t len)
{
	struct envelope env;
	const uint8_t *body;
	size_t body_len;

	int rc = spool_record_parse(rec, len, &env, &body, &body_len);
	if (rc < 0) {
		static const struct envelope zero;
		if (memcmp(&env, &zero, sizeof(env)) != 0) {
			fprintf(stderr, "failed parse left the envelope filled\n");
			abort();
		}
		return;
	}
	if (body < rec || body + body_len != rec + len) {
		fprintf(stderr, "body not the tail of the record\n");
		abort();
	}
	size_t hdr_len;
	if (spool_record_hdr_len(&env, &hdr_len) != 0 || hdr_len != len - body_len) {
		fprintf(stderr, "header length: got %zu want %zu\n", hdr_len, len - body_len);
		abort();
	}
	uint8_t *hdr = malloc(hdr_len);
	if (!hdr)
		abort();
	spool_record_build(&env, body, body_len, hdr, hdr_len);
	if (memcmp(hdr, rec, hdr_len) != 0) {
		size_t i = 0;
		while (hdr[i] == rec[i])
			i++;
		fprintf(stderr, "re-serialised header differs at byte %zu: got %02x want %02x\n", i,
			hdr[i], rec[i]);
		abort();
	}
	free(hdr);
	envelope_free(&env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	check_roundtrip(copy, size);
	if (size >= 12 && size <= UINT32_MAX) {
		spool_put32(copy + 4, (uint32_t)size);
		spool_put32(copy + 8, crc32c(0, copy + 12, size - 12));
		check_roundtrip(copy, size);
	}
	free(copy);
	return 0;
}
