"""Pages to image features: the processor's crops (uint8 on CPU workers, float math on the device) and the vision tower."""
