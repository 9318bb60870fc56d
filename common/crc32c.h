/*
 * crc32c: CRC-32C (Castagnoli), the checksum of spool records.  Uses the
 * SSE4.2 crc32 instruction when the CPU has it, a table otherwise.
 *
 * Thread context: any; no state.
 */
#ifndef SLUICE_CRC32C_H
#define SLUICE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extend crc (0 to start) over len bytes of buf; returns the new CRC. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
