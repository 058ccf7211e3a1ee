"""The model itself: loading through from_pretrained only, Idefics2's real tokenizer offline, the tiny test model."""
