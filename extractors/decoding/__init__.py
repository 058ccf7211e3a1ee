"""The decode loop around the forward pass: per-row grammar state, the static loop, the continuous-batching engine and its cache."""
