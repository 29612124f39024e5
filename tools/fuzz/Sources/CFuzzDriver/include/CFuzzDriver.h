#include <stddef.h>
#include <stdint.h>

// libFuzzer's entry point for programs that keep their own `main` (SwiftPM gives every executable one).
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*UserCb)(const uint8_t *Data, size_t Size));

// LeakSanitizer: allocations made between these calls are never reported as leaks.
void __lsan_disable(void);
void __lsan_enable(void);
