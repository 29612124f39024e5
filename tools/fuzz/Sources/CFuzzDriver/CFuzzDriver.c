// Header-only target: SwiftPM needs one source file to build it.
#include "CFuzzDriver.h"
