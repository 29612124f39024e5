#include "CKernels.h"
#include <string.h>

/* Zip's CRC-32 (reflected polynomial 0xEDB88320), eight bytes per step with eight tables
 * ("slicing-by-8"): a byte-at-a-time loop would make checking torch.save archives cost more
 * than reading them. */

static uint32_t crc_tables[8][256];
static int crc_tables_ready;

static void crc_build_tables(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        crc_tables[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc_tables[0][n];
        for (int t = 1; t < 8; t++) {
            c = crc_tables[0][c & 0xFF] ^ (c >> 8);
            crc_tables[t][n] = c;
        }
    }
    __atomic_store_n(&crc_tables_ready, 1, __ATOMIC_RELEASE);
}

uint32_t moe_crc32(uint32_t crc, const void *data, size_t n) {
    /* Building twice from two threads writes the same values, so a race here is harmless. */
    if (!__atomic_load_n(&crc_tables_ready, __ATOMIC_ACQUIRE)) crc_build_tables();
    const uint8_t *p = (const uint8_t *)data;
    uint32_t c = ~crc;
    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        c = crc_tables[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
        n--;
    }
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        word = __builtin_bswap64(word);
#endif
        uint32_t lo = c ^ (uint32_t)word;
        uint32_t hi = (uint32_t)(word >> 32);
        c = crc_tables[7][lo & 0xFF] ^ crc_tables[6][(lo >> 8) & 0xFF] ^ crc_tables[5][(lo >> 16) & 0xFF]
          ^ crc_tables[4][lo >> 24] ^ crc_tables[3][hi & 0xFF] ^ crc_tables[2][(hi >> 8) & 0xFF]
          ^ crc_tables[1][(hi >> 16) & 0xFF] ^ crc_tables[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n > 0) {
        c = crc_tables[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
        n--;
    }
    return ~c;
}
