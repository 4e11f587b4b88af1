// Dataset is an interface (see dataset.h); its implementations live beside it.
#include "data/dataset.h"
