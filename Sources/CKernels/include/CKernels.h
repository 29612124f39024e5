#ifndef MOE_CKERNELS_H
#define MOE_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/* Widen bf16 (stored as uint16) to fp32. */
void moe_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
/* Round fp32 to bf16 (round-to-nearest-even, NaN kept quiet), as torch does. */
void moe_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
/* Widen IEEE fp16 (stored as uint16) to fp32. */
void moe_f16_to_f32(const uint16_t *src, float *dst, size_t n);

#endif
